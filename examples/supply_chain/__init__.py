"""Compute core of the multi-agent supply-chain demo: synthetic data, forecasting, routing.

The demo's agents trade forecasting and routing work on the marketplace; this package is the
work itself, kept free of any agent or network code so that it can be tested on its own and
so that a seller agent only wraps it. `data` makes a deterministic store network with daily
demand, `forecasting` predicts that demand with additive Holt-Winters and scores it against the
seasonal-naive baseline (MASE), and `routing` turns demands into truck routes with a
capacitated VRP solver and checks any plan independently of the solver.

It needs the `demo` extra (`pip install -e ".[demo]"`): numpy, statsmodels, pyvrp, matplotlib.
"""
