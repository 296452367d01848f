"""The registry of architectures and their model parameters, without TensorFlow: names, groups, what
each architecture is made of (`Architecture`), `ModelConfig` and the check that a model can be built.
The builders that turn them into Keras models are in `ecgkeras.models.builders`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from ecgkeras.errors import EcgkerasError
from ecgkeras.schema import Schema, Search, parameter
RNN_READOUTS: tuple[str, ...] = ("last", "pool")
RECURRENT_ONLY: tuple[str, ...] = ("rnn_units", "rnn_dropout", "depth", "rnn_readout")  # no effect on the CNN
GROUPS: tuple[str, ...] = ("paper", "benchmark", "temporal", "all")  # names --architectures accepts


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its readable name and temporal module."""

    name: str
    display_name: str
    cell: str | None = None  # "lstm", "gru" or None for the CNN baseline
    bidirectional: bool = False
    depth: int = 0  # recurrent, TCN or Transformer layers
    in_paper: bool = False
    module: str = "pool"  # what follows the front-end: pool (the CNN), rnn, tcn, transformer; or the
    # benchmark networks' own stack: inception, xresnet
    group: str = ""  # paper, benchmark, temporal, or "" (variants only in `all`)

    @property
    def front_end(self) -> bool:
        """Whether it uses the shared convolutional front-end (all but the benchmark networks)."""
        return self.module not in BENCHMARK_MODULES
BENCHMARK_MODULES = ("inception", "xresnet")


def _registry() -> dict[str, Architecture]:
    archs = [Architecture("cnn", "CNN", in_paper=True, group="paper")]
    for cell, bidirectional in (("lstm", False), ("gru", False), ("lstm", True), ("gru", True)):
        label = ("Bi" if bidirectional else "") + cell.upper()
        key = ("bi" if bidirectional else "") + cell
        for depth in (1, 2, 3):
            suffix = "" if depth == 1 else f"-x{depth}"
            display = f"CNN-{label}" + ("" if depth == 1 else f" x{depth}")
            in_paper = depth <= 2 and key != "bigru"
            archs.append(Architecture(f"cnn-{key}{suffix}", display, cell, bidirectional, depth, in_paper, "rnn",
                                      "paper" if in_paper else ""))
    archs += [Architecture("inception1d", "Inception1D", module="inception", group="benchmark"),
              Architecture("xresnet1d101", "XResNet1D-101", module="xresnet", group="benchmark"),
              Architecture("cnn-tcn", "CNN-TCN", depth=4, module="tcn", group="temporal"),
              Architecture("cnn-transformer", "CNN-Transformer", depth=2, module="transformer", group="temporal")]
    return {arch.name: arch for arch in archs}
ARCHITECTURES: dict[str, Architecture] = _registry()
PAPER_ARCHITECTURES: tuple[str, ...] = tuple(name for name, arch in ARCHITECTURES.items() if arch.in_paper)


def get_architecture(name: str) -> Architecture:
    """The registered architecture `name`, or a one-line error listing the valid names."""
    if name not in ARCHITECTURES:
        raise EcgkerasError(f"unknown architecture {name!r}: choose one of {', '.join(ARCHITECTURES)} "
                            f"(or a group: {', '.join(GROUPS)})")
    return ARCHITECTURES[name]


def group_members(group: str) -> tuple[str, ...]:
    """The architectures of a group: paper (the seven, the default), benchmark, temporal or all."""
    return tuple(name for name, arch in ARCHITECTURES.items() if group == "all" or arch.group == group)


def expand_architectures(names: Sequence[str]) -> list[str]:
    """Architecture and group names (`GROUPS`) to registered architecture names, in the order given, each once."""
    expanded = [member for name in names
                for member in (group_members(name) if name in GROUPS else (get_architecture(name).name,))]
    return list(dict.fromkeys(expanded))


@dataclass
class ModelConfig(Schema):
    """The builder's hyperparameters, shared by every architecture (defaults for 100 Hz input)."""

    kind: ClassVar[str] = "model parameter"

    filters: tuple[int, ...] = parameter((64, 64, 128, 128), "filters of each conv block", minimum=1)
    kernel_sizes: tuple[int, ...] = parameter((7, 5, 5, 3), "kernel size of each conv block", minimum=1)
    pool_size: int = parameter(2, "max-pooling factor after each conv block", minimum=1)
    rnn_units: int = parameter(64, "units of each recurrent layer (per direction)", minimum=1,
                               search=Search(choices=(32, 64, 128)))
    rnn_dropout: float = parameter(0.2, "dropout between stacked recurrent layers (and inside TCN and Transformer "
                                   "layers)", minimum=0, maximum=1, below_maximum=True, search=Search(0.0, 0.5))
    depth: int | None = parameter(None, "recurrent, TCN or Transformer layers; None: the architecture's own",
                                  minimum=1)
    rnn_readout: str = parameter("last", "what the head sees of the last recurrent layer: last (its final "
                                 "state, the paper's design) or pool (average and max over its sequence)",
                                 choices=RNN_READOUTS, search=Search(choices=RNN_READOUTS))
    tcn_filters: int = parameter(64, "cnn-tcn: filters of each dilated convolution", minimum=1)
    tcn_kernel_size: int = parameter(3, "cnn-tcn: kernel size of each dilated convolution", minimum=2)
    attention_heads: int = parameter(4, "cnn-transformer: attention heads per layer", minimum=1)
    transformer_units: int = parameter(128, "cnn-transformer: units of each layer's feed-forward part", minimum=1)
    inception_filters: int = parameter(32, "inception1d: filters of each branch and of the bottleneck", minimum=1)
    inception_depth: int = parameter(6, "inception1d: inception modules (a shortcut every 3)", minimum=1)
    inception_kernel_size: int = parameter(40, "inception1d: longest kernel (then halved twice, made odd)",
                                           minimum=4)
    xresnet_widths: tuple[int, ...] = parameter((64, 128, 256, 512), "xresnet1d101: bottleneck width of each "
                                                "stage (output: width x xresnet_expansion)", minimum=1)
    xresnet_blocks: tuple[int, ...] = parameter((3, 4, 23, 3), "xresnet1d101: residual blocks of each stage "
                                                "(3, 4, 23, 3: ResNet-101)", minimum=1)
    xresnet_expansion: int = parameter(4, "xresnet1d101: bottleneck expansion", minimum=1)
    xresnet_kernel_size: int = parameter(5, "xresnet1d101: kernel of the stem and the middle convolutions",
                                         minimum=1)
    head_units: int = parameter(128, "units of the head's dense layer", minimum=1,
                                search=Search(choices=(64, 128, 256)))
    dropout: float = parameter(0.3, "dropout in the head", minimum=0, maximum=1, below_maximum=True,
                               search=Search(0.0, 0.5))

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.filters) != len(self.kernel_sizes):
            raise EcgkerasError(f"filters {self.filters} and kernel_sizes {self.kernel_sizes} "
                                "must have the same length (one per conv block)")
        if len(self.xresnet_widths) != len(self.xresnet_blocks):
            raise EcgkerasError(f"xresnet_widths {self.xresnet_widths} and xresnet_blocks {self.xresnet_blocks} "
                                "must have the same length (one per stage)")


def check_model(name: str, input_shape: tuple[int | None, int], n_classes: int, config: ModelConfig,
                sampling_rate: int = 100) -> None:
    """Refuse a model that cannot be built (no class, an input the front-end cannot fill, a depth the
    architecture lacks); `build_model` calls it, and a study before it writes anything."""
    arch = get_architecture(name)
    if n_classes < 1:
        raise EcgkerasError(f"n_classes={n_classes}: a model needs at least one class")
    if len(input_shape) != 2:
        raise EcgkerasError(f"input_shape={tuple(input_shape)}: expected (time steps, leads)")
    reduction = stem_pool_factor(sampling_rate) * {
        "inception": 1, "xresnet": 4 * 2 ** (len(config.xresnet_widths) - 1)}.get(
        arch.module, config.pool_size ** len(config.filters))
    if input_shape[0] is not None and input_shape[0] < reduction:
        raise EcgkerasError(f"input_shape={tuple(input_shape)}: {input_shape[0]} time steps are too few for "
                            f"{'the front-end' if arch.front_end else name}, which downsamples by {reduction}; "
                            "use longer records or crops")
    if config.depth is not None and not arch.depth:
        raise EcgkerasError(f"depth={config.depth} does not apply to {name!r}: it has no recurrent, TCN or "
                            "Transformer layers")


def stem_pool_factor(sampling_rate: int) -> int:
    """The front-end's averaging factor: records above 100 Hz are brought down to about 100 Hz first."""
    return max(1, sampling_rate // 100)
