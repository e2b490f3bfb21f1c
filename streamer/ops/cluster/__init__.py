"""`run.py up --cluster`: one cell per Ray node, a coordinator that assigns streams, one label proxy.

Only this package imports Ray (the `cluster` extra: `pip install -e '.[cluster]'`); `up` on one
host never does.
"""
