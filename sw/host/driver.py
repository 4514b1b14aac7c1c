"""The host driver: programs an accelerator with a bundle and runs whole networks on it.

Two modes (docs/network.md, "End to end"):

* **whole network** (a program with node records, ``compile --network``): the host quantizes
  the input image, streams its codes once (``CTRL.RUN_NETWORK``) and reads the last node's
  outputs; the accelerator runs every layer from its activation buffer. The host then only
  reorders the outputs (producer order -> the C-order output tensor) and dequantizes them
  (and runs a final softmax), contract section 3. One run per image on the sequential
  design; on the inter-layer pipeline (``config.pipeline``, docs/network.md section 6) one
  run per batch: N_IMAGES, then every image's codes in, every image's outputs out, the
  images overlapping in the accelerator (a transport may cap the images per run,
  :attr:`Transport.images_per_run`: the UART bridge runs one).
* **layer jobs** (every program; ``mode="layers"`` for a network program, for debugging):
  the accelerator computes the compute layers (a *layer job*: input vectors in, the output
  unit's values out, docs/hardware.md); the host does everything else, on integers exactly
  as the golden model does: input quantization, im2col with the zero-point padding,
  pooling, residual adds, flatten, and the reshape of the job outputs. The graph walk is
  :func:`bitline.sw.integer.graph.walk` and every non-compute layer is
  :func:`bitline.sw.integer.graph.layer_forward`, the golden model's own code; a compute
  layer's output is what the hardware's output stream delivers (requantized codes, or
  ``acc + bias`` of a raw final layer), never recomputed on the host.

Three layers of abstraction, so each transport implements only what it must:

* :class:`Transport` -- five primitives: register write and read, stream ``image.bin`` into
  ``program``, start a job and stream its ``inputs`` / ``outputs``, and the same for a
  whole-network run (optional: a transport without it refuses network programs). The
  cocotb bench (:class:`bitline.sim.cocotb.bench_host.CocotbTransport`) and a UART bridge to
  a board implement these.
* :class:`Device` -- the register protocol of :mod:`bitline.hw.core.host_interface` on a
  transport, written once: identify the hardware, load an image and check its status, run
  a layer job or a whole-network run, read the performance counters (per run and per
  node). Errors reported by the hardware raise :class:`DeviceError` with the
  :class:`~bitline.hw.core.host_interface.ErrorCode`.
* :class:`HostDriver` -- a program (or bundle) on a device: check the config digest,
  load the image, and run a float batch through the network: one whole-network run per
  image, or one layer job per compute layer (optionally split into jobs of at most
  ``max_vectors`` vectors).

Example (with any transport)::

    driver = HostDriver.from_bundle(read_bundle("build/digits"), Device(transport))
    driver.load()
    result = driver.run(x, return_all=True)     # DriverResult: output, output_int, layers
    result.runs[0].counters["cycles"]           # whole-network mode: latency of image 0
    result.runs[0].counters["interval"]         # pipeline hardware: one run, the batch
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.image import FORMAT_VERSION, MAGIC_WORD, config_digest_bytes
from bitline.hw.spec.program import Program
from bitline.hw.spec.registers import (
    COUNTERS,
    IMAGE_COUNTERS,
    NODE_COUNTERS,
    VECTOR_BITS,
    Ctrl,
    ErrorCode,
    Register,
    Status,
)
from bitline.sw.integer import arith, graph
from bitline.sw.integer.qmodel import QuantizedModel

__all__ = [
    "DeviceError", "AcceleratorDevice", "Transport", "Device", "JobRecord", "NetworkRun",
    "PipelinedRun", "DriverResult", "HostDriver", "MODES", "decode_status", "lane_beats", "lane_outputs",
    "producer_to_map", "resolve_mode",
]

#: Run modes of :class:`HostDriver` (``None``: ``network`` for a program with node records,
#: else ``layers``).
MODES = ("network", "layers")

#: STATUS polls after the last image byte / job output before the driver gives up.
DEFAULT_POLLS = 1000


class DeviceError(RuntimeError):
    """The accelerator reported an error, or did not reach the expected state.

    Attributes
    ----------
    code:
        The :class:`~bitline.hw.core.host_interface.ErrorCode` from STATUS bits 8..15 (``NONE`` when the
        device did not report one, e.g. a timeout).
    status:
        The raw STATUS word.
    """

    def __init__(self, message: str, code: ErrorCode = ErrorCode.NONE, status: int = 0):
        super().__init__(message)
        self.code = code
        self.status = status


def decode_status(status: int) -> tuple[Status, ErrorCode]:
    """Split a STATUS word into its flag bits and error code.

    An error code the host does not know is returned as its integer value.
    """
    flags = Status(status & 0xFF)
    raw_code = (status >> 8) & 0xFF
    try:
        code = ErrorCode(raw_code)
    except ValueError:
        code = raw_code
    return flags, code


def _describe(status: int) -> str:
    flags, code = decode_status(status)
    names = [flag.name.lower() for flag in Status if flags & flag]
    text = f"STATUS=0x{status:04x} ({', '.join(names) or 'idle'}"
    if code:
        text += f", error {getattr(code, 'name', code)}"
    return text + ")"


class AcceleratorDevice(Protocol):
    """What :class:`HostDriver` needs from a device (:class:`Device` is one).

    ``program(image)`` loads ``image.bin`` and raises on a reported error;
    ``run_layer_job(layer, vectors (V, K), n_outputs) -> (V, O)`` runs one layer job (with
    ``copies=c`` for a layer with copies, the keyword is only passed when ``c > 1``);
    ``counters()`` returns the performance counters of the last job by name. Optional:
    ``check_config(config)`` (raise ``ValueError`` for hardware built for another config)
    and ``identify()`` (a dict with ``"n_layers"``, the layer records loaded, and
    ``"n_nodes"``); the driver uses them when present. Whole-network mode needs
    ``run_network(codes, n_outputs) -> (n_outputs,)`` and ``node_counters(node)``
    (:class:`Device` has both); on pipeline hardware also ``run_network(..., n_images=N)``,
    ``image_counters()`` and optionally ``images_per_run`` (``None``: any batch).
    """

    def program(self, image: bytes): ...

    def run_layer_job(self, layer: int, vectors: np.ndarray, n_outputs: int) -> np.ndarray: ...

    def counters(self) -> dict[str, int]: ...


def lane_beats(vectors: np.ndarray, copies: int, lanes: int | None = None) -> np.ndarray:
    """Return the input beats of a job of ``vectors`` (V, K) on a layer with ``copies`` copies.

    int64 ``(S * K, lanes)`` with ``S = ceil(V / copies)`` (``lanes`` defaults to
    ``copies``): beat ``j * K + i`` carries code ``i`` of vector ``k * S + j`` in lane ``k``,
    the contiguous shares of :func:`bitline.hw.spec.timing.copy_shares`; where that vector
    does not exist (an idle lane, docs/hardware.md "Copies") and in lanes ``>= copies`` the
    code is 0, a don't-care.
    """
    vectors = np.asarray(vectors, dtype=np.int64)
    count, width = vectors.shape
    lanes = copies if lanes is None else lanes
    if not 1 <= copies <= lanes:
        raise ValueError(f"copies must be between 1 and the {lanes} lanes, not {copies}")
    share = -(-count // copies)
    padded = np.zeros((copies * share, width), dtype=np.int64)
    padded[:count] = vectors
    beats = np.zeros((share, width, lanes), dtype=np.int64)
    beats[:, :, :copies] = padded.reshape(copies, share, width).transpose(1, 2, 0)
    return beats.reshape(share * width, lanes)


def lane_outputs(beats: np.ndarray, count: int, copies: int, n_outputs: int) -> np.ndarray:
    """Inverse of :func:`lane_beats` for outputs: ``(S * O, lanes)`` beats -> ``(V, O)``.

    Lane ``k``'s outputs are copy ``k``'s vectors; the idle lanes' values are dropped.
    """
    beats = np.asarray(beats, dtype=np.int64)
    share = -(-count // copies)
    lanes = beats.shape[1]
    per_lane = beats.reshape(share, n_outputs, lanes)[:, :, :copies]
    return per_lane.transpose(2, 0, 1).reshape(copies * share, n_outputs)[:count]


def producer_to_map(values: np.ndarray, channels: int) -> np.ndarray:
    """Reorder a node's outputs from producer order to its C-order ``(c, y, x)`` map.

    A node emits output ``k = p * C + c`` (pixel ``p`` row-major, channel innermost); the
    activation buffer stores it at ``c * P + p`` (network contract, ``dst_base``). Returns
    int64 ``(C * P,)`` in that stored order, which is the C-order flattening of the output
    tensor ``(C, H, W)`` (or ``(C,)`` for a gemm, ``P = 1``).

    Raises
    ------
    ValueError
        If ``channels`` does not divide the number of values.
    """
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    channels = int(channels)
    if channels < 1 or len(values) % channels:
        raise ValueError(f"{len(values)} node outputs are not a whole number of pixels of "
                         f"{channels} channels")
    return values.reshape(-1, channels).T.reshape(-1)


def resolve_mode(program: Program, mode: str | None) -> str:
    """Return the run mode of ``program``: ``mode`` checked, or the default for ``None``.

    ``None`` is ``"network"`` for a program with node records, else ``"layers"``.

    Raises
    ------
    ValueError
        For a mode not in :data:`MODES`, or ``"network"`` for a program without nodes.
    """
    nodes = program.nodes
    if mode is None:
        return "network" if nodes else "layers"
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "network" and not nodes:
        raise ValueError("mode 'network' needs a program with node records (compile with "
                         "--network); this program runs as layer jobs")
    return mode


class Transport(abc.ABC):
    """The primitives through which a host reaches an :class:`~bitline.hw.core.top.Accelerator`.

    Implementations: the cocotb bench (simulation), a UART bridge (board). All methods
    block until done.
    """

    #: The most images one whole-network run on pipeline hardware may carry through this
    #: transport (N_IMAGES), ``None`` for any number: a transport that streams every input
    #: code before it takes any output holds at most what the accelerator can hold in the
    #: meantime (docs/network.md section 6.10).
    images_per_run: int | None = None

    @abc.abstractmethod
    def write_register(self, register: int, value: int) -> None:
        """Write the 32-bit ``value`` to CSR word address ``register``."""

    @abc.abstractmethod
    def read_register(self, register: int) -> int:
        """Return the 32-bit value of CSR word address ``register``."""

    @abc.abstractmethod
    def send_image(self, image: bytes) -> None:
        """Stream ``image`` on the ``program`` stream, one byte per transfer, in order."""

    @abc.abstractmethod
    def start_job(self, codes: np.ndarray, n_outputs: int) -> np.ndarray:
        """Start the configured layer job and stream its inputs and outputs.

        Writes ``CTRL.START``, sends the codes on ``inputs`` and takes ``n_outputs`` values
        from ``outputs``. A transport that can should offer the first code in the cycle
        after the start and take every output at once (then the cycle counter equals the
        performance model's, docs/contract.md section 5).

        Parameters
        ----------
        codes:
            int64 ``(V * K,)``: the job's input codes in order (vector major); for a layer
            with ``c`` copies int64 ``(S * K, c)`` beats (:func:`lane_beats`), lane ``k`` of
            a beat the code of copy ``k`` (a transport pads the lanes to ``max_copies`` and
            refuses beats wider than its lanes).
        n_outputs:
            Beats to take from the ``outputs`` stream (``V * O``; ``S * O`` with copies).

        Returns
        -------
        np.ndarray
            int64, the signed output values in stream order: ``n_outputs`` of them (with
            copies ``(n_outputs, c)``, lane ``k`` copy ``k``'s), or fewer if the accelerator
            reported an error before the end (the caller reads STATUS).
        """

    def start_network(self, codes: np.ndarray, n_outputs: int) -> np.ndarray:
        """Start a whole-network run and stream its input image and outputs.

        Writes ``CTRL.RUN_NETWORK``, sends the network input's codes on ``inputs`` lane 0
        (one code per beat, C order) and takes ``n_outputs`` values from ``outputs`` lane 0
        (the last node's, producer order). Timing as :meth:`start_job`: a transport that
        offers the first code in the cycle after the start and takes every output at once
        makes the counters equal the performance model's (:mod:`bitline.sw.perf.network`).

        On pipeline hardware the driver writes N_IMAGES first and the run carries ``N``
        images: ``codes`` are every image's codes, image after image, and the outputs every
        image's, image after image (docs/network.md section 6.4); the transport streams
        them the same way (it need not know ``N``).

        Parameters
        ----------
        codes:
            int64 ``(N * C * H * W,)``: the input images' codes (``N = 1`` on the
            sequential design).
        n_outputs:
            Values to take from ``outputs``.

        Returns
        -------
        np.ndarray
            int64 ``(n_outputs,)`` signed values, or fewer if the accelerator reported an
            error before the end (the caller reads STATUS).

        Raises
        ------
        DeviceError
            This default: the transport has no whole-network run (run with
            ``mode="layers"``).
        """
        raise DeviceError(f"{type(self).__name__} cannot start a whole-network run "
                          "(CTRL.RUN_NETWORK); run the program with per-layer jobs "
                          "(mode='layers', bitline run --layer-jobs)")


@dataclass
class JobRecord:
    """One layer job the driver ran.

    Attributes
    ----------
    layer:
        Index of the layer job in the program (LAYERS record).
    name:
        Layer name.
    n_vectors:
        Input vectors of the job.
    counters:
        The performance counters after the job (:data:`bitline.hw.core.host_interface.COUNTERS` names).
    wall_seconds:
        Host wall time of the job, transport included.
    """

    layer: int
    name: str
    n_vectors: int
    counters: dict[str, int]
    wall_seconds: float


@dataclass
class NetworkRun:
    """One whole-network run (one image) the driver ran.

    Attributes
    ----------
    image:
        Index of the image in the batch.
    counters:
        The performance counters of the run (:data:`bitline.hw.spec.registers.COUNTERS`
        names): ``cycles`` is the latency of the image, from the cycle after
        ``RUN_NETWORK`` to the last output taken.
    nodes:
        Per node in execution order, its counters
        (:data:`bitline.hw.spec.registers.NODE_COUNTERS` names: ``node_cycles``,
        ``node_input_stall``, ``node_output_stall``).
    wall_seconds:
        Host wall time of the run, transport included.
    """

    image: int
    counters: dict[str, int]
    nodes: list[dict[str, int]]
    wall_seconds: float

    @property
    def name(self) -> str:
        """``"image <index>"`` (what a progress display shows in place of a layer name)."""
        return f"image {self.image}"


@dataclass
class PipelinedRun(NetworkRun):
    """One whole-network run of ``n_images`` images on the inter-layer pipeline.

    ``image`` is the batch index of the run's first image. ``counters`` holds the run's
    :data:`~bitline.hw.spec.registers.COUNTERS` -- ``cycles`` from ``RUN_NETWORK`` to the
    last image's last output, the event counters summed over the images -- and the
    :data:`~bitline.hw.spec.registers.IMAGE_COUNTERS`: ``latency`` (to image 0's last
    output) and ``interval`` (between the last outputs of the last two images; 0 for one
    image). ``nodes`` holds each node's counters summed over the run's images
    (docs/network.md section 6.6).
    """

    n_images: int = 1

    @property
    def name(self) -> str:
        """``"images <first>-<last>"`` (``"image <index>"`` for a one-image run)."""
        if self.n_images == 1:
            return f"image {self.image}"
        return f"images {self.image}-{self.image + self.n_images - 1}"

    @property
    def latency(self) -> int:
        """LATENCY: cycles from ``RUN_NETWORK`` to the first image's last output."""
        return self.counters["latency"]

    @property
    def interval(self) -> int:
        """INTERVAL: cycles between the last outputs of the run's last two images."""
        return self.counters["interval"]


@dataclass
class DriverResult:
    """What :meth:`HostDriver.run` returns (the fields of the golden model's result, plus jobs).

    Attributes
    ----------
    output:
        float64 ``(N, *output_shape)``: dequantized model output.
    output_int:
        int64 ``(N, *output_shape)``: output codes, or ``acc + bias`` in raw mode.
    layers:
        Layer name -> int64 output of every layer (with ``return_all``; in whole-network
        mode only the output layer's: the others stay in the activation buffer).
    jobs:
        Every layer job in execution order (layer-job mode).
    runs:
        Every whole-network run (whole-network mode): one :class:`NetworkRun` per image on
        the sequential design, :class:`PipelinedRun` s of several images on the pipeline.
    """

    output: np.ndarray
    output_int: np.ndarray
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    jobs: list[JobRecord] = field(default_factory=list)
    runs: list[NetworkRun] = field(default_factory=list)

    @property
    def mode(self) -> str:
        """``"network"`` if the batch ran whole-network, else ``"layers"``."""
        return "network" if self.runs else "layers"

    def counters(self, name: str | None = None) -> dict[str, int]:
        """Return the counters summed over all jobs and runs (or the jobs of layer ``name``).

        Only the :data:`~bitline.hw.spec.registers.COUNTERS`: a pipelined run's latency and
        interval are the run's, not summable.
        """
        total = {counter: 0 for counter, _ in COUNTERS}
        records = self.jobs + (self.runs if name is None else [])
        for record in records:
            if name is None or record.name == name:
                for counter, value in record.counters.items():
                    if counter in total:
                        total[counter] += value
        return total


class Device:
    """The accelerator's register protocol (docs/hardware.md, host interface) on a transport.

    Parameters
    ----------
    transport:
        How registers and streams are reached.
    polls:
        STATUS reads after an image or a job before :class:`DeviceError` (timeout).
    """

    def __init__(self, transport: Transport, *, polls: int = DEFAULT_POLLS):
        self.transport = transport
        self.polls = int(polls)

    @property
    def images_per_run(self) -> int | None:
        """The transport's cap on the images of one pipelined run
        (:attr:`Transport.images_per_run`)."""
        return getattr(self.transport, "images_per_run", None)

    # ---------------------------------------------------------------- registers
    def status(self) -> int:
        """Return the STATUS word."""
        return self.transport.read_register(Register.STATUS)

    def identify(self) -> dict:
        """Return ``{"id", "version", "digest", "n_layers", "n_nodes"}`` from the registers.

        ``n_nodes`` is N_NODES, the node records loaded (0 on hardware without the
        whole-network mode).
        """
        read = self.transport.read_register
        digest = b"".join(read(Register.DIGEST0 + word).to_bytes(4, "little")
                          for word in range(4))
        return {"id": read(Register.ID), "version": read(Register.VERSION),
                "digest": digest, "n_layers": read(Register.N_LAYERS),
                "n_nodes": read(Register.N_NODES)}

    def check_config(self, config: AcceleratorConfig) -> None:
        """Raise ``ValueError`` unless the hardware is a bitline accelerator for ``config``.

        Compares ID with ``"BTLN"``, VERSION with the image format this host writes and
        DIGEST0..3 with the config's digest (the image would be rejected anyway; this names
        the mismatch before a long load).
        """
        info = self.identify()
        if info["id"] != MAGIC_WORD:
            raise ValueError(f"device ID register reads 0x{info['id']:08x}, not a bitline "
                             f"accelerator (0x{MAGIC_WORD:08x})")
        if info["version"] != FORMAT_VERSION:
            raise ValueError(f"device parses image format version {info['version']}, this "
                             f"host writes version {FORMAT_VERSION}")
        want = config_digest_bytes(config)
        if info["digest"] != want:
            raise ValueError(f"device was built for config digest {info['digest'].hex()}..., "
                             f"the program for {want.hex()}... (config {config.digest[:16]})")

    def counters(self) -> dict[str, int]:
        """Return the 64-bit performance counters of the last job or run by name."""
        read = self.transport.read_register
        return {name: read(low) | read(low + 1) << 32 for name, low in COUNTERS}

    def node_counters(self, node: int) -> dict[str, int]:
        """Return node ``node``'s counters of the last whole-network run by name.

        Writes NODE, then reads the 64-bit NODE_* counters
        (:data:`bitline.hw.spec.registers.NODE_COUNTERS`).
        """
        self.transport.write_register(Register.NODE, int(node))
        read = self.transport.read_register
        return {name: read(low) | read(low + 1) << 32 for name, low in NODE_COUNTERS}

    def image_counters(self) -> dict[str, int]:
        """Return LATENCY and INTERVAL of the last pipelined run by name
        (:data:`bitline.hw.spec.registers.IMAGE_COUNTERS`; 0 on hardware without the
        pipeline)."""
        read = self.transport.read_register
        return {name: read(low) | read(low + 1) << 32 for name, low in IMAGE_COUNTERS}

    def clear_error(self) -> None:
        """Clear a reported error (CTRL bit 2)."""
        self.transport.write_register(Register.CTRL, Ctrl.CLEAR_ERROR)

    def _wait(self, what: str, finished: Callable[[int], bool]) -> int:
        for _ in range(self.polls):
            status = self.status()
            flags, code = decode_status(status)
            if flags & Status.ERROR:
                name = getattr(code, "name", str(code))
                raise DeviceError(f"{what}: the accelerator reports error {name} "
                                  f"({int(code)}), {_describe(status)}", code, status)
            if finished(status):
                return status
        raise DeviceError(f"{what}: no response after {self.polls} STATUS reads, "
                          f"{_describe(status)}", ErrorCode.NONE, status)

    # ---------------------------------------------------------------- operations
    def program(self, image: bytes) -> int:
        """Load ``image`` (``image.bin``) through the ``program`` stream; return STATUS.

        Raises
        ------
        DeviceError
            If the loader reports an error (bad magic, digest, CRC, capacity, ...; the
            exception's ``code``) or does not finish.
        """
        self.transport.write_register(Register.CTRL, Ctrl.LOAD)
        self.transport.send_image(bytes(image))
        return self._wait("loading image.bin",
                          lambda status: not status & Status.LOADING
                          and bool(status & Status.PROGRAMMED))

    def run_layer_job(self, layer: int, vectors: np.ndarray, n_outputs: int, *,
                      copies: int = 1) -> np.ndarray:
        """Run one layer job; return its outputs.

        Parameters
        ----------
        layer:
            Layer-table index (program order).
        vectors:
            int ``(V, K)`` input codes, ``1 <= V < 2**32``.
        n_outputs:
            ``O``, output channels of the layer.
        copies:
            ``c``, the layer's copies: the vectors go out as :func:`lane_beats`, N_VECTORS
            is ``V`` and N_SHARE ``ceil(V / c)`` (docs/hardware.md, "Copies").

        Returns
        -------
        np.ndarray
            int64 ``(V, O)``.

        Raises
        ------
        DeviceError
            If the job is rejected (bad layer, not programmed) or the hardware reports an
            error while it runs.
        """
        vectors = np.asarray(vectors, dtype=np.int64)
        if vectors.ndim != 2 or not 1 <= len(vectors) < (1 << VECTOR_BITS):
            raise ValueError(f"vectors must be (V, K) with 1 <= V < 2**{VECTOR_BITS}, "
                             f"not shape {vectors.shape}")
        copies = int(copies)
        if copies < 1:
            raise ValueError(f"copies must be at least 1, not {copies}")
        write = self.transport.write_register
        write(Register.LAYER, layer)
        write(Register.N_VECTORS, len(vectors))
        if copies == 1:
            codes, expected, shape = vectors.reshape(-1), len(vectors) * int(n_outputs), None
        else:
            share = -(-len(vectors) // copies)
            write(Register.N_SHARE, share)
            codes, expected = lane_beats(vectors, copies), share * int(n_outputs)
            shape = (expected, copies)
        outputs = np.asarray(self.transport.start_job(codes, expected), dtype=np.int64)
        status = self._wait(f"layer job {layer}",
                            lambda status: bool(status & Status.DONE)
                            and not status & Status.BUSY)
        want = (expected,) if shape is None else shape
        if outputs.shape != want:
            raise DeviceError(f"layer job {layer}: {outputs.shape[0] if outputs.ndim else 0} "
                              f"output beats, expected {expected}, {_describe(status)}",
                              ErrorCode.NONE, status)
        if shape is None:
            return outputs.reshape(len(vectors), int(n_outputs))
        return lane_outputs(outputs, len(vectors), copies, int(n_outputs))

    def run_network(self, codes: np.ndarray, n_outputs: int, *,
                    n_images: int | None = None) -> np.ndarray:
        """Run the loaded network on one input image (or ``n_images``); return the last
        node's outputs.

        Parameters
        ----------
        codes:
            int ``(C * H * W,)`` (any shape, flattened in C order): the network input's
            codes, written to the activation buffer at address 0; with ``n_images = N``
            every image's, image after image.
        n_outputs:
            Values the ``to_host`` node sends over the run (``dst_channels * P``, times
            ``N``).
        n_images:
            Pipeline hardware (docs/network.md section 6.4): written to N_IMAGES before
            ``RUN_NETWORK``; ``None`` (the sequential design) writes nothing.

        Returns
        -------
        np.ndarray
            int64 ``(n_outputs,)`` in producer order (:func:`producer_to_map` reorders),
            image after image.

        Raises
        ------
        DeviceError
            If the run is refused (``NO_NETWORK``: hardware without the activation buffer
            or an image without node records; ``NOT_PROGRAMMED``), the hardware reports
            an error while it runs, or the outputs stop short.
        ValueError
            For no codes or ``n_outputs < 1``, or ``n_images`` that is not a positive
            number dividing both.
        """
        codes = np.asarray(codes, dtype=np.int64).reshape(-1)
        n_outputs = int(n_outputs)
        if not len(codes) or n_outputs < 1:
            raise ValueError(f"a whole-network run needs input codes and outputs, not "
                             f"{len(codes)} codes and {n_outputs} outputs")
        if n_images is not None:
            n_images = int(n_images)
            if n_images < 1 or len(codes) % n_images or n_outputs % n_images:
                raise ValueError(f"a pipelined run of {n_images} images: {len(codes)} codes "
                                 f"and {n_outputs} outputs are not that many images' worth")
            self.transport.write_register(Register.N_IMAGES, n_images)
        outputs = np.asarray(self.transport.start_network(codes, n_outputs), dtype=np.int64)
        status = self._wait("whole-network run",
                            lambda status: bool(status & Status.DONE)
                            and not status & Status.BUSY)
        if outputs.shape != (n_outputs,):
            raise DeviceError(f"whole-network run: {outputs.shape[0] if outputs.ndim else 0} "
                              f"outputs, expected {n_outputs}, {_describe(status)}",
                              ErrorCode.NONE, status)
        return outputs


class HostDriver:
    """Run a mapped network on a device (docs/verification.md, "cocotb end to end").

    Parameters
    ----------
    program, qmodel:
        The mapped program and the quantized model it was compiled from.
    device:
        The accelerator (:class:`AcceleratorDevice`: a :class:`Device` on a transport, or a
        board's device such as the UART host's).
    image:
        ``image.bin`` bytes (default: :func:`bitline.sw.bundle.encode_image` of
        ``program``).
    max_vectors:
        Split a layer's vectors into jobs of at most this many (default: one job per layer
        per batch). Outputs do not depend on it; the cycle counters do (each job pays its
        own load and drain).
    progress:
        Called as ``progress(job, done_vectors, total_vectors)`` after each job, with
        ``total_vectors`` the vectors of the whole batch over all layers; in whole-network
        mode as ``progress(run, done_images, total_images)`` after each run
        (:class:`NetworkRun` or :class:`PipelinedRun`).
    images_per_run:
        Pipeline hardware: at most this many images per whole-network run (default: the
        whole batch in one run, or the device's :attr:`Device.images_per_run` if smaller).
    mode:
        ``"network"`` (one whole-network run per image, or per batch on pipeline hardware;
        the program needs node records, ``compile --network``), ``"layers"`` (one layer job per compute layer, the host
        doing the rest; works for every program, for debugging a network program) or
        ``None``: ``"network"`` when the program has node records, else ``"layers"``.

    Raises
    ------
    ValueError
        For an unknown mode, ``"network"`` for a program without node records, a
        program lacking a compute layer of the model, or ``images_per_run < 1``.
    """

    def __init__(self, program: Program, qmodel: QuantizedModel, device: AcceleratorDevice, *,
                 image: bytes | None = None, max_vectors: int | None = None,
                 progress: Callable | None = None, mode: str | None = None,
                 images_per_run: int | None = None):
        if image is None:
            from bitline.sw.bundle import encode_image

            image = encode_image(program)
        if max_vectors is not None and max_vectors < 1:
            raise ValueError(f"max_vectors must be at least 1, not {max_vectors}")
        if images_per_run is not None and images_per_run < 1:
            raise ValueError(f"images_per_run must be at least 1, not {images_per_run}")
        self.images_per_run = images_per_run
        self.mode = resolve_mode(program, mode)
        self.program = program
        self.qmodel = qmodel
        self.device = device
        self.image = bytes(image)
        self.max_vectors = max_vectors
        self.progress = progress
        self.layer_index = {layer.name: index for index, layer in enumerate(program.layers)}
        names = {layer.name for layer in qmodel.model.compute_layers}
        missing = sorted(names - set(self.layer_index))
        if missing:
            raise ValueError(f"program has no layer job for compute layer(s) "
                             f"{', '.join(missing)} of model {qmodel.model.name}")

    @classmethod
    def from_bundle(cls, bundle, device: AcceleratorDevice, **options) -> "HostDriver":
        """Return a driver for a :class:`~bitline.sw.bundle.Bundle` (its program, model, image)."""
        return cls(bundle.program, bundle.qmodel, device, image=bundle.image, **options)

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the program was compiled for."""
        return self.program.config

    def load(self, *, check: bool = True):
        """Check the hardware (``check``) and load the image; return the device's answer.

        With a :class:`Device` the answer is the STATUS word after loading.

        Raises
        ------
        ValueError
            If the device is not built for the program's config.
        DeviceError
            If the loader reports an error.
        """
        if check and hasattr(self.device, "check_config"):
            self.device.check_config(self.config)
        status = self.device.program(self.image)
        if hasattr(self.device, "identify"):
            info = self.device.identify()
            loaded = info["n_layers"]
            if loaded != len(self.program.layers):
                raise DeviceError(f"device loaded {loaded} layer records, the image holds "
                                  f"{len(self.program.layers)}", ErrorCode.NONE, status or 0)
            nodes = len(self.program.nodes or ())
            if self.mode == "network" and info.get("n_nodes", nodes) != nodes:
                raise DeviceError(f"device loaded {info['n_nodes']} node records, the image "
                                  f"holds {nodes}", ErrorCode.NONE, status or 0)
        return status

    def total_vectors(self, batch: int) -> int:
        """Return the input vectors a batch of ``batch`` samples sends over all layer jobs."""
        from bitline.sw.perf import layer_vectors

        return batch * sum(layer_vectors(layer) for layer in self.qmodel.model.compute_layers)

    def run(self, x: np.ndarray, *, return_all: bool = False,
            mode: str | None = None) -> DriverResult:
        """Run a float batch ``(N, *input_shape)`` through the network on the device.

        ``mode`` overrides the driver's :attr:`mode` for this batch (same values).

        Returns
        -------
        DriverResult
            Output, integer output, every layer's output (``return_all``; whole-network
            mode: the output layer's only) and the jobs or runs.

        Raises
        ------
        ValueError
            For a batch of the wrong shape or a bad mode.
        DeviceError
            If the hardware reports an error.
        """
        x = graph.check_input(self.qmodel, x)
        mode = self.mode if mode is None else resolve_mode(self.program, mode)
        if mode == "network":
            return self._run_network(x, return_all)
        jobs: list[JobRecord] = []
        total = self.total_vectors(len(x))
        done = 0

        def forward(qlayer, inputs):
            nonlocal done
            layer = qlayer.layer
            if layer.op not in ("conv", "gemm"):
                return graph.layer_forward(qlayer, inputs)
            batch = inputs[0].shape[0]
            cols = arith.layer_columns(qlayer, inputs[0])
            index = self.layer_index[layer.name]
            n_outputs = self.program.layers[index].n_outputs
            copies = self.program.layers[index].copies
            # (only a layer with copies passes the keyword: devices without lanes keep working)
            options = {"copies": copies} if copies > 1 else {}
            step = self.max_vectors or len(cols)
            outputs = []
            for start in range(0, len(cols), step):
                chunk = cols[start:start + step]
                begin = time.perf_counter()
                outputs.append(self.device.run_layer_job(index, chunk, n_outputs, **options))
                record = JobRecord(index, layer.name, len(chunk), self.device.counters(),
                                   time.perf_counter() - begin)
                jobs.append(record)
                done += len(chunk)
                if self.progress is not None:
                    self.progress(record, done, total)
            return arith.columns_to_output(qlayer, np.concatenate(outputs), batch)

        codes = arith.quantize_input(x, self.qmodel.input)
        output_int, kept = graph.walk(self.qmodel, codes, forward, return_all=return_all)
        return DriverResult(output=graph.model_output(self.qmodel, output_int),
                            output_int=output_int, layers=kept, jobs=jobs)

    def run_sizes(self, batch: int) -> list[int]:
        """Return the images of each whole-network run for a batch of ``batch`` images.

        One per image on the sequential design; on pipeline hardware the batch in runs of
        at most :attr:`images_per_run` and the device's cap (the last run takes the rest).
        """
        if not self.config.pipeline:
            return [1] * batch
        caps = [cap for cap in (self.images_per_run,
                                getattr(self.device, "images_per_run", None)) if cap]
        size = min(caps + [batch]) if batch else 1
        return [min(size, batch - start) for start in range(0, batch, size)]

    def _run_network(self, x: np.ndarray, return_all: bool) -> DriverResult:
        """Whole-network mode: one ``RUN_NETWORK`` per image, or per :meth:`run_sizes`
        images on pipeline hardware (module docstring)."""
        model = self.qmodel.model
        codes = arith.quantize_input(x, self.qmodel.input)
        output_shape = tuple(model.output_shape)
        n_outputs = int(np.prod(output_shape))
        last = self.program.nodes[-1]
        if last.dst_size != n_outputs:
            raise ValueError(f"the program's last {last.label(len(self.program.nodes) - 1)} "
                             f"sends {last.dst_size} values, the output of model "
                             f"{model.name} {output_shape} holds {n_outputs}")
        channels = last.dst_channels
        pipeline = self.config.pipeline
        outputs = np.empty((len(x), n_outputs), dtype=np.int64)
        runs: list[NetworkRun] = []
        image = 0
        for size in self.run_sizes(len(x)):
            begin = time.perf_counter()
            batch = codes[image:image + size].reshape(-1)
            if pipeline:
                values = self.device.run_network(batch, size * n_outputs, n_images=size)
            else:
                values = self.device.run_network(batch, n_outputs)
            for offset, piece in enumerate(values.reshape(size, n_outputs)):
                outputs[image + offset] = producer_to_map(piece, channels)
            counters = self.device.counters()
            if pipeline:
                counters.update(self.device.image_counters())
            nodes = [self.device.node_counters(node)
                     for node in range(len(self.program.nodes))]
            wall = time.perf_counter() - begin
            record = (PipelinedRun(image, counters, nodes, wall, size) if pipeline
                      else NetworkRun(image, counters, nodes, wall))
            runs.append(record)
            image += size
            if self.progress is not None:
                self.progress(record, image, len(x))
        output_int = outputs.reshape(len(x), *output_shape)
        layers = {}
        if return_all:
            producer = next(layer for layer in model.layers
                            if layer.output == model.output_name)
            layers[producer.name] = output_int
        return DriverResult(output=graph.model_output(self.qmodel, output_int),
                            output_int=output_int, layers=layers, runs=runs)
