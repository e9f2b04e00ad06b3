"""The optimisation core: model, objective, parameterisation, transforms, recipe, loop.

Nothing here knows VGG, files or the command line. Each concept is a module of
small frozen dataclasses (hashable, so they are static arguments of jitted
functions, and equal by value, so the same settings reuse compiled programs):

  * `models`: a network as named activations of one group of images.
  * `objectives`: a scalar to maximise, composable with +, -, and scalar *.
  * `params`: how the optimised variable becomes an image.
  * `transforms`: key-first random image transforms applied before the model.
  * `recipes`: the four bundled with an optimiser and a schedule.
  * `render`: the loop, written for one map and vmapped over many.
"""
