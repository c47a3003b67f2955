"""The benchmark side: conventional-codec sweeps, pyiqa metrics, rd-curve, evaluate, fuzzing, caption-model
training. Nothing in core, media, models or codec imports it.
"""
