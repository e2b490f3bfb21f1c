"""Every setting of every process, in one place.

One frozen dataclass per section, each field with its default and a one-line comment.
A TOML file (see `configs/*.toml`) carries only what differs from these defaults, and
`--set section.key=value` overrides single values on the command line. An unknown section
or key, a value of the wrong type, or a choice outside its `Literal[...]` is an error that names
it (and the allowed values): nothing starts on a typo. `python -m configs.reference` turns the
comments into the README's settings tables.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_BUNDLE = Path("artifacts/bundle.pt")


class ActionableError(Exception):
    """A problem the user can fix (a typo, a missing file, a dead camera): `run.py` prints the
    message, which says what is wrong and what to do, without a traceback, and exits with 2."""


class ConfigError(ActionableError, ValueError):
    """A config file or override that cannot be used; the message says which key and why."""


# The settings that take one of a fixed set of values; the code that acts on them reads the
# choices from here (typing.get_args), so a value allowed here is one the code knows.
BackendChoice = typing.Literal["auto", "torch", "openvino"]
DeviceChoice = typing.Literal["auto", "cpu", "cuda"]
PrecisionChoice = typing.Literal["auto", "fp32", "reduced", "int8"]
WeightsChoice = typing.Literal["imagenet", "none"]
SequenceInputsChoice = typing.Literal["features", "differences"]
SplitChoice = typing.Literal[1, 2, 3]
DispatchChoice = typing.Literal["credit", "push"]


@dataclass(frozen=True)
class Endpoints:
    # captures connect here; each feature worker binds one (comma-separate several to share load)
    frames: str = "tcp://127.0.0.1:5555"
    # feature workers PUSH connect here; the LSTM worker binds it
    features: str = "tcp://127.0.0.1:5556"
    # the LSTM worker binds this PUB socket; dashboards SUBscribe to `label/<stream>/`
    labels: str = "tcp://127.0.0.1:5557"
    # captures PUSH small preview JPEGs here; the LSTM worker binds it (when capture.preview_fps > 0) and
    # republishes them on `preview/<stream>/`
    previews: str = "tcp://127.0.0.1:5558"


@dataclass(frozen=True)
class Capture:
    # frames per second sampled from the source (the source may run faster; frames are skipped)
    fps: float = 15.0
    # short side of a frame after resizing, pixels (0: the trained bundle's preset; 256 without a bundle)
    resize: int = 0
    # side of the square center crop taken after resizing, pixels (0: the bundle's preset; 224 without a bundle)
    crop: int = 0
    # loop a video file source when it ends
    loop: bool = False
    # ZeroMQ send high-water mark: keep it tiny so stale frames are dropped, not queued
    send_hwm: int = 2
    # kernel send buffer of the frames socket, bytes (0: the OS default, megabytes: frames queue up there)
    send_buffer_bytes: int = 65536
    # first reconnect delay for a camera that fails, seconds (doubles on each further failure)
    retry_initial_s: float = 0.5
    # longest reconnect delay for a camera that keeps failing, seconds
    retry_max_s: float = 8.0
    # a source that gives no frame for this long is treated as dead and reopened
    stall_timeout_s: float = 5.0
    # abandoned reader threads still stuck inside the camera driver before the capture exits to be restarted
    max_stuck_readers: int = 3
    # synthetic camera: frames per activity segment (0: the bundle's training clip length; 160 without a bundle)
    synthetic_segment_frames: int = 0
    # synthetic camera: seed of its scenes (`up` adds the camera's position, so cameras differ)
    synthetic_seed: int = 0
    # stop after this many frames (0: run until stopped); used by tests and benchmarks
    max_frames: int = 0
    # seconds between stats messages
    stats_interval_s: float = 2.0
    # preview JPEGs (dashboard thumbnails) sent per second at most, off the frame path (0: none)
    preview_fps: float = 2.0
    # preview thumbnails: side in pixels (the crop scaled down)
    preview_size: int = 160
    # preview thumbnails: JPEG quality, 1-100
    preview_quality: int = 70
    # replay files and folders at `fps` as a live camera (newest frame wins, stale ones dropped); false: every sampled frame is labelled
    files_as_live: bool = False
    # how frames reach the feature workers: credit (a worker asks for frames when it has room) or push (round-robin)
    dispatch: DispatchChoice = "credit"
    # `up`: live sources sharing one capture process (a thread each, one ZeroMQ I/O thread); a file always has its own
    cameras_per_process: int = 8


@dataclass(frozen=True)
class Features:
    # checkpoint bundle with the trained CNN; random weights (logged) when it does not exist
    bundle: str = str(DEFAULT_BUNDLE)
    # use torchvision's ImageNet weights when no bundle exists and the weights are on this machine
    imagenet_fallback: bool = True
    # inference backend (auto: CUDA when visible, else OpenVINO, else torch)
    backend: BackendChoice = "auto"
    # device for the torch backend (auto: CUDA when visible, else the CPU)
    device: DeviceChoice = "auto"
    # largest batch of frames built across streams
    max_batch: int = 16
    # longest wait for a batch to fill, milliseconds (0: take what is queued; batches fill by themselves under load)
    max_wait_ms: float = 0.0
    # receive high-water mark on the frames socket, per capture (small: stale frames drop at the capture)
    recv_hwm: int = 1
    # kernel receive buffer of the frames socket, bytes (0: the OS default, megabytes: frames queue up there)
    recv_buffer_bytes: int = 65536
    # seconds between stats messages
    stats_interval_s: float = 2.0
    # inference threads: torch intra-op and OpenVINO INFERENCE_NUM_THREADS (0: the library's default)
    threads: int = 0
    # precision: auto (CPU: the bundle's int8 model if its label guard admitted it, else bf16 where capable;
    # CUDA: fp16), fp32, reduced (bf16/fp16, never int8), int8 (the int8 model even if not admitted)
    precision: PrecisionChoice = "auto"
    # OpenVINO: batches run at once under load, each on a share of the cores (1: one at a time; a lone one uses all)
    openvino_requests: int = 2
    # credit dispatch: an unused credit expires after this long; a worker silent for 5x this counts as gone, seconds
    credit_lease_s: float = 1.0
    # benchmarks and tests only: sleep (k-1) x each batch's compute time, a stand-in for a k times slower worker (1: off)
    slowdown: float = 1.0


@dataclass(frozen=True)
class Lstm:
    # checkpoint bundle with the trained LSTM; random weights (logged) when it does not exist
    bundle: str = str(DEFAULT_BUNDLE)
    # how many top classes each label message carries
    top_k: int = 3
    # a stream silent for this long has its state evicted (announced on its event topic)
    evict_after_s: float = 10.0
    # how long to wait for a missing sequence number before treating it as a gap, milliseconds
    reorder_wait_ms: float = 200.0
    # seconds between stats messages
    stats_interval_s: float = 2.0
    # hidden size of the random-weights LSTM used when no bundle exists
    random_hidden: int = 64
    # layers of the random-weights LSTM used when no bundle exists
    random_layers: int = 2
    # window, frames, of the random-weights LSTM used when no bundle exists
    random_window: int = 32
    # streams with state at once; a new stream beyond this evicts the least recently seen (announced)
    max_streams: int = 1000


@dataclass(frozen=True)
class Security:
    # encrypt and authenticate every TCP socket with ZeroMQ CURVE
    curve: bool = False
    # folder with this deployment's key pairs and the allow-list of client public keys
    keys_dir: str = "keys"
    # largest message a receiving socket accepts, bytes (stops a huge declared size exhausting memory)
    max_message_bytes: int = 16 * 1024 * 1024
    # name of this process's CURVE client pair in keys_dir/clients/ (servers accept keys_dir/allowed/*.key)
    client_key: str = "client"
    # largest message part the LSTM worker's features socket accepts, bytes (a feature is a few kilobytes)
    max_feature_message_bytes: int = 64 * 1024
    # largest message part a subscriber's socket accepts, bytes (labels, events and stats are small)
    max_label_message_bytes: int = 64 * 1024


@dataclass(frozen=True)
class Supervisor:
    # number of feature workers `run.py up` starts (they share the frames)
    feature_workers: int = 1
    # restart a process that died, after this delay, seconds
    restart_delay_s: float = 0.5
    # where `up` writes each process's log
    log_dir: str = "runs/logs"
    # a process that keeps dying soon after start is restarted with doubling delays up to this, seconds
    restart_max_delay_s: float = 10.0
    # a process that ran this long before dying counts as healthy: its next restart uses restart_delay_s
    stable_after_s: float = 30.0
    # seconds between the supervisor's stats messages (restart counters, on stats/supervisor/)
    stats_interval_s: float = 2.0


@dataclass(frozen=True)
class CnnRecipe:
    # epochs of per-frame ResNet-18 fine-tuning (the lecture's first notebook)
    epochs: int = 3
    # frames per training batch
    batch_size: int = 64
    # Adam's learning rate
    lr: float = 1e-3
    # DataLoader worker processes
    workers: int = 2
    # start from torchvision's ImageNet weights (must be on this machine) or from scratch
    weights: WeightsChoice = "none"
    # frames taken per second of video by `prepare`
    frames_per_second: float = 25.0
    # bfloat16 autocast on capable CPUs, AMP on GPU
    mixed_precision: bool = True
    # training frames drawn at random each epoch (0: every training frame once per epoch)
    frames_per_epoch: int = 0
    # score every k-th frame: of the validation split after each epoch, of the test split once at the end
    test_frame_stride: int = 1
    # seed for weight init and shuffling, so runs repeat
    seed: int = 0
    # where `--weights imagenet` downloads ResNet-18 from when torch hub's folder lacks it (empty: torchvision's URL)
    weights_url: str = ""


@dataclass(frozen=True)
class LstmRecipe:
    # hidden size of the LSTM over feature sequences (the lecture's third notebook)
    hidden: int = 64
    # stacked LSTM layers
    layers: int = 1
    # frames per window the LSTM reads, in training and live (the bundle carries it to the LSTM worker)
    window: int = 32
    # stride between training windows sampled from one video, frames
    window_stride: int = 4
    # passes over the training windows
    epochs: int = 30
    # windows per training batch
    batch_size: int = 64
    # Adam's learning rate
    lr: float = 3e-3
    # dropout between stacked LSTM layers (training only; no effect with one layer)
    dropout: float = 0.0
    # seed for weight init and shuffling, so runs repeat
    seed: int = 0
    # what the LSTM reads per frame: features x_t, or differences x_t - x_{t-1} (models/sequence_inputs.py)
    inputs: SequenceInputsChoice = "differences"
    # training only: zero this fraction of a window's input channels (same channels at every step)
    input_dropout: float = 0.5
    # training only: share of windows resampled at a random speed with random drops (models/temporal_augment.py)
    augment_share: float = 0.75
    # slowest resampling speed (0.2: an activity 5x slower than in the clips; the trend interpolated, noise kept)
    augment_min_speed: float = 0.2
    # fastest resampling speed (1.25: 25% faster than in the clips)
    augment_max_speed: float = 1.25
    # highest chance that a frame is dropped after each kept one (each window draws its rate up to this)
    augment_drop_rate: float = 0.3


@dataclass(frozen=True)
class Data:
    # UCF101-layout root (with UCF-101/ and ucfTrainTestlist/)
    ucf_root: str = "data/synthetic"
    # classes to train on; empty: the lecture's five when the data has them all, else every class in classInd.txt
    classes: tuple[str, ...] = ()
    # which of UCF101's official train/test splits
    split: SplitChoice = 1
    # where prepare/extract/train write their outputs
    work_dir: str = "runs/train"
    # short side of a frame after resizing, pixels, in training (the bundle carries it to the live pipeline)
    resize: int = 256
    # side of the square center crop taken after resizing, pixels, in training (carried by the bundle)
    crop: int = 224
    # share of the training list's groups held out to choose epochs and thresholds (whole groups, highest-numbered)
    validation_fraction: float = 0.15


@dataclass(frozen=True)
class SyntheticSet:
    # clips per activity in the generated set `run.py demo` trains on (UCF101's layout, in data.ucf_root)
    clips_per_class: int = 40
    # frames per generated clip
    frames_per_clip: int = 64
    # groups per class; the lowest ~30% are the test split, as in UCF101
    groups: int = 10
    # seed of every generated clip, so the set repeats
    seed: int = 0


@dataclass(frozen=True)
class Dashboard:
    # address the web dashboard listens on (loopback by default; elsewhere, set a token)
    host: str = "127.0.0.1"
    # TCP port of the web dashboard (the page, its event stream and /metrics)
    port: int = 8080
    # when set, the page, its event stream and /metrics require it (?token=... or `Authorization: Bearer ...`)
    token: str = ""
    # updates sent to a browser per stream per second at most (the newest state; nothing queues); the
    # browser's CPU grows with it
    updates_per_s: float = 4.0
    # lines kept in the event log
    event_log_size: int = 200
    # seconds of latency history behind each card's p50/p99 chart
    latency_window_s: float = 60.0


@dataclass(frozen=True)
class Activity:
    # activity segments per stream (models/segments.py): weight of the newest frame in the moving average of probabilities
    ema_alpha: float = 0.25
    # a class whose smoothed probability reaches this starts a candidate segment
    enter: float = 0.6
    # a segment ends when its class's smoothed probability falls below this
    leave: float = 0.4
    # frames a candidate must hold before its segment is published (shorter blips are not segments)
    min_frames: int = 8
    # use the four values train-lstm chose on its validation split when the bundle records them (false: the above)
    from_bundle: bool = True


@dataclass(frozen=True)
class Cluster:
    # `up --cluster`: the label proxy's XSUB, where cells' labels go in (out on endpoints.labels); tcp://0.0.0.0:PORT across nodes
    labels_in: str = "tcp://127.0.0.1:5559"
    # how often the coordinator reads Ray's live nodes and each cell asks for its streams, seconds
    poll_interval_s: float = 0.5
    # Ray namespace of the coordinator, the cells and the proxy (two pipelines on one Ray cluster need two)
    namespace: str = "streamer"
    # `--cluster local:N`: Ray's health check period of each node, seconds (a lost node is noticed after about 2)
    health_check_period_s: float = 1.0
    # `--cluster local:N`: CPUs each test node offers Ray (a cell's own processes are not counted against them)
    local_node_cpus: int = 1


@dataclass(frozen=True)
class Config:
    endpoints: Endpoints = field(default_factory=Endpoints)
    capture: Capture = field(default_factory=Capture)
    features: Features = field(default_factory=Features)
    lstm: Lstm = field(default_factory=Lstm)
    security: Security = field(default_factory=Security)
    supervisor: Supervisor = field(default_factory=Supervisor)
    data: Data = field(default_factory=Data)
    cnn: CnnRecipe = field(default_factory=CnnRecipe)
    sequence: LstmRecipe = field(default_factory=LstmRecipe)
    synthetic: SyntheticSet = field(default_factory=SyntheticSet)
    dashboard: Dashboard = field(default_factory=Dashboard)
    activity: Activity = field(default_factory=Activity)
    cluster: Cluster = field(default_factory=Cluster)


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then the TOML file (if any), then `section.key=value` overrides."""
    values: dict[str, dict[str, object]] = {}
    if path is not None:
        values = _read_toml(Path(path))
    for item in overrides:
        section, key, raw = _split_override(item)
        values.setdefault(section, {})[key] = _parse_scalar(raw)
    return build_config(values, origin=str(path) if path else "--set")


def build_config(values: dict[str, dict[str, object]], origin: str = "config") -> Config:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    built = {}
    for section_name, section_values in values.items():
        if section_name not in sections:
            raise ConfigError(
                f"{origin}: unknown section [{section_name}]; known sections: {', '.join(sections)}"
            )
        if not isinstance(section_values, dict):
            raise ConfigError(f"{origin}: [{section_name}] must be a table of key = value lines")
        section_type = _section_type(sections[section_name])
        built[section_name] = _build_section(section_type, section_name, section_values, origin)
    return Config(**built)


def config_to_toml(config: Config) -> str:
    """Serialise a whole config (every value, so a child process sees exactly what its parent resolved)."""
    lines = []
    for section in dataclasses.fields(config):
        lines.append(f"[{section.name}]")
        for key, value in dataclasses.asdict(getattr(config, section.name)).items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def replace(config: Config, section: str, **changes: object) -> Config:
    """A copy of `config` with some values of one section changed (configs stay frozen)."""
    updated = dataclasses.replace(getattr(config, section), **changes)
    return dataclasses.replace(config, **{section: updated})


def _read_toml(path: Path) -> dict[str, dict[str, object]]:
    if not path.exists() and not path.is_absolute() and (CONFIG_DIR / path.name).exists():
        path = CONFIG_DIR / path.name
    if not path.exists():
        known = ", ".join(p.name for p in sorted(CONFIG_DIR.glob("*.toml")))
        raise ConfigError(f"config file {path} does not exist; the shipped ones are: {known}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error


def _split_override(item: str) -> tuple[str, str, str]:
    name, sep, raw = item.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not key:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. capture.fps=10")
    return section, key, raw.strip()


def _parse_scalar(raw: str) -> object:
    """Read an override as TOML would (numbers, booleans, quoted strings, arrays); bare words stay strings."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _section_type(section_field: dataclasses.Field) -> type:
    hints = typing.get_type_hints(Config)
    return hints[section_field.name]


def _build_section(section_type: type, section_name: str, values: dict[str, object], origin: str):
    hints = typing.get_type_hints(section_type)
    accepted = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(
                f"{origin}: unknown key {section_name}.{key}; known keys in [{section_name}]: "
                f"{', '.join(hints)}"
            )
        accepted[key] = _coerce(value, hints[key], f"{section_name}.{key}", origin)
    return section_type(**accepted)


def _coerce(value: object, expected: object, name: str, origin: str) -> object:
    if typing.get_origin(expected) is typing.Literal:
        choices = typing.get_args(expected)
        # `type(...) is`: True == 1 and 1.0 == 1 in Python, but neither is the choice 1
        if not any(type(value) is type(choice) and value == choice for choice in choices):
            raise ConfigError(f"{origin}: {name} must be one of {', '.join(_toml_value(c) for c in choices)}; "
                              f"got {value!r}")
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(expected) is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{origin}: {name} must be a list of strings, got {value!r}")
        return tuple(value)
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):  # type: ignore[arg-type]
        raise ConfigError(
            f"{origin}: {name} must be {getattr(expected, '__name__', expected)}, "
            f"got {type(value).__name__} {value!r}"
        )
    return value


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def add_config_arguments(parser) -> None:
    """The two options every subcommand takes."""
    parser.add_argument("--config", default=None,
                        help="TOML file with the values that differ from the defaults (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one value, e.g. --set capture.fps=10 (repeatable)")


def from_args(args) -> Config:
    return load_config(args.config, args.overrides)
