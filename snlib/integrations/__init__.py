"""snlib's losses inside other libraries' training pipelines (each integration is an optional extra).

- :mod:`snlib.integrations.pml`: the SN loss as a pytorch-metric-learning loss (``pip install 'snlib[pml]'``).
"""
