"""The torch side of jaxviz, installed as `jaxviz_convert`: torchvision `.pth` files
and torchvision's download of the ImageNet weights.

`jaxviz/` never imports torch; `jaxviz.app.load_weights` imports this package
only when a `.pth` has to be read or the ImageNet weights fetched.
"""
