"""The torch side of jaxviz: reading torchvision `.pth` files and downloading them.

`jaxviz/` never imports torch; it imports this package only when a `.pth` has
to be read or the ImageNet weights fetched.
"""
