"""The architectures of the study: the registry (`registry`: names, groups, `ModelConfig`; no TensorFlow)
and the Keras builders (`builders`: `build_model` and its blocks).

Names are imported on first use, so reading the registry needs no TensorFlow.
"""

from ecgkeras.lazy import lazy_exports

_HOMES = {
    "registry": ("ARCHITECTURES", "PAPER_ARCHITECTURES", "GROUPS", "RNN_READOUTS", "RECURRENT_ONLY", "Architecture",
                 "ModelConfig", "get_architecture", "group_members", "expand_architectures", "check_model"),
    "builders": ("build_model", "recurrent_layer_count", "conv_front_end", "recurrent_module", "tcn_module",
                 "transformer_module", "inception_network", "xresnet_network", "classification_head",
                 "SinusoidalPositions"),
}
__getattr__, __all__ = lazy_exports(__name__, _HOMES)
