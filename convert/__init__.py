"""The loaders of published files, installed as `jaxviz_convert`: the download of the
ImageNet weights (hash-checked, into torch's hub cache), a `.pth` reader that needs no
torch, and the conversion of a state dict into jaxviz's strict weight tables.

`jaxviz/` never imports this package at import time; `jaxviz.app.load_weights` imports
it only when a `.pth` has to be read or the ImageNet weights fetched. torch itself is
needed only by the `reference_*` modules, the live PyTorch networks the tests compare
against (the `torch` extra).
"""
