"""nn-Meter's builder on the farm: workspace and configs, operator and kernel model
generators (Keras and torch), fusion-rule tester, kernel samplers and predictor
training.

This ``__init__`` stays light (no tensorflow, torch or ray at import): import the
submodules you need, e.g. :mod:`nn_farm.builder.models` and
:mod:`nn_farm.builder.convert`.
"""
