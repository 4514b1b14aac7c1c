"""The register map of the host interface: the one definition of addresses, bits and codes.


The host talks to the accelerator through three streams (``program`` image bytes, ``inputs``
codes, ``outputs`` values; see :class:`~bitline.hw.core.top.Accelerator`) and a small register
bus (:class:`CSRSignature`): a write takes effect in the cycle ``w_en`` is high; a read
presents ``addr`` with ``r_en`` and returns ``r_data`` in the next cycle. Registers are 32
bits; 64-bit counters are two registers, low word first.

Register map (word addresses, :class:`Register`):

========================  ===  ===  ===========================================================
register                  adr  acc  meaning
========================  ===  ===  ===========================================================
ID                        0    R    ``bundle_format.MAGIC_WORD`` ("BTLN")
VERSION                   1    R    ``bundle_format.FORMAT_VERSION`` the loader accepts
CTRL                      2    W    bit 0 start a layer job; bit 1 (re)start loading an image;
                                    bit 2 clear the error status; bit 3 start a whole-network
                                    run (:class:`Ctrl` ``RUN_NETWORK``)
STATUS                    3    R    bit 0 busy, 1 done, 2 error, 3 loading, 4 programmed;
                                    bits 8..15 the :class:`ErrorCode`
LAYER                     4    RW   layer-table index of the next job (ignored while busy)
N_VECTORS                 5    RW   input vectors of the next job, ``V`` (ignored while busy);
                                    a write also sets N_SHARE to the same value
N_LAYERS                  6    R    layer records loaded
N_SHARE                   7    RW   vectors per copy, ``ceil(V / c)`` for a layer with ``c``
                                    copies: the job's input beats (docs/hardware.md,
                                    "Copies"); written after N_VECTORS (ignored while busy)
DIGEST0..3                8-11 R    first 16 bytes of the config digest (little-endian words)
N_NODES                   12   R    network node records loaded (0 without the network
                                    hardware)
NODE                      13   RW   node index the NODE_* counters show (network hardware only)
N_IMAGES                  14   RW   images of the next RUN_NETWORK (pipeline hardware only;
                                    0 counts as 1; reads 0, writes ignored, elsewhere)
CYCLES_LO/HI              16   R    busy cycles of the last job or network run
OU_READS_LO/HI            18   R    OU reads issued (all units)
ADC_CONVERSIONS_LO/HI     20   R    ADC conversions (valid columns of each read)
STALL_CYCLES_LO/HI        22   R    cycles waiting for the host (input starved / output full)
REDUCTION_OPERANDS_LO/HI  24   R    partial sums sent over the inter-unit reduction
NODE_CYCLES_LO/HI         26   R    cycles of node NODE in the last run (its start to its last
                                    output written / taken)
NODE_INPUT_STALL_LO/HI    28   R    cycles node NODE's consumer waited for the im2col reader
NODE_OUTPUT_STALL_LO/HI   30   R    cycles node NODE's output was valid but not taken
LATENCY_LO/HI             32   R    pipeline: cycles from RUN_NETWORK to image 0's last output
INTERVAL_LO/HI            34   R    pipeline: cycles between the last outputs of the run's last
                                    two images (0 for a one-image run)
========================  ===  ===  ===========================================================

The counters are cleared by ``start`` (or ``RUN_NETWORK``) and count while the job (or the
run) is busy; in a network run STALL_CYCLES counts only the cycles waiting for the host
(input phase starved, the last node's output not taken). The NODE_* counters of a node are
written when it ends (docs/hardware.md, "Whole-network mode"); registers 12, 13 and 26-31
read as 0 on hardware without the network (``config.network`` false), 14 and 32-35 on
hardware without the pipeline (``config.pipeline`` false).

The Amaranth side is :class:`bitline.hw.core.host_interface.HostInterface`; the host side is
:mod:`bitline.sw.host.driver`.
"""

from __future__ import annotations

import enum

__all__ = [
    "Register", "Ctrl", "Status", "ErrorCode", "COUNTERS", "NODE_COUNTERS", "IMAGE_COUNTERS", "CSR_ADDR_BITS", "CSR_DATA_BITS",
    "COUNTER_BITS", "VECTOR_BITS", "READABLE", "WRITABLE",
]

CSR_ADDR_BITS = 8
CSR_DATA_BITS = 32
COUNTER_BITS = 64
#: Width of the N_VECTORS register and of the scheduler's vector counters.
VECTOR_BITS = 32


class Register(enum.IntEnum):
    """Word addresses of the control and status registers."""

    ID = 0
    VERSION = 1
    CTRL = 2
    STATUS = 3
    LAYER = 4
    N_VECTORS = 5
    N_LAYERS = 6
    N_SHARE = 7
    DIGEST0 = 8
    DIGEST1 = 9
    DIGEST2 = 10
    DIGEST3 = 11
    N_NODES = 12
    NODE = 13
    N_IMAGES = 14
    CYCLES_LO = 16
    CYCLES_HI = 17
    OU_READS_LO = 18
    OU_READS_HI = 19
    ADC_CONVERSIONS_LO = 20
    ADC_CONVERSIONS_HI = 21
    STALL_CYCLES_LO = 22
    STALL_CYCLES_HI = 23
    REDUCTION_OPERANDS_LO = 24
    REDUCTION_OPERANDS_HI = 25
    NODE_CYCLES_LO = 26
    NODE_CYCLES_HI = 27
    NODE_INPUT_STALL_LO = 28
    NODE_INPUT_STALL_HI = 29
    NODE_OUTPUT_STALL_LO = 30
    NODE_OUTPUT_STALL_HI = 31
    LATENCY_LO = 32
    LATENCY_HI = 33
    INTERVAL_LO = 34
    INTERVAL_HI = 35


class Ctrl(enum.IntFlag):
    """Bits of the CTRL register."""

    START = 1
    LOAD = 2
    CLEAR_ERROR = 4
    RUN_NETWORK = 8


class Status(enum.IntFlag):
    """Bits 0..7 of the STATUS register (the error code sits in bits 8..15)."""

    BUSY = 1
    DONE = 2
    ERROR = 4
    LOADING = 8
    PROGRAMMED = 16


class ErrorCode(enum.IntEnum):
    """Error codes in STATUS bits 8..15 (the first error is kept until cleared)."""

    NONE = 0
    BAD_MAGIC = 1          # header magic is not "BTLN"
    BAD_VERSION = 2        # format version the loader does not parse
    BAD_HEADER = 3         # header_bytes / table_entry_bytes / section_count unusable
    BAD_DIGEST = 4         # image built for another accelerator config
    HEADER_CRC = 5         # header CRC mismatch
    TABLE_CRC = 6          # section-table CRC mismatch
    BAD_SECTION = 7        # unknown id, wrong record size or length, overlapping offset
    SECTION_CRC = 8        # a section's payload CRC mismatch
    CAPACITY = 9           # more records than the hardware holds (entries of a unit, ...)
    BAD_RECORD = 10        # a record names a unit the hardware does not have
    BAD_LAYER = 11         # job started on a layer index that was not loaded
    NOT_PROGRAMMED = 12    # job started without a loaded image
    XBAR_PROTOCOL = 13     # crossbar port returned codes at the wrong latency
    NO_NETWORK = 14        # RUN_NETWORK without the network hardware or node records


#: (name, register of the low word) of the performance counters.
COUNTERS = (
    ("cycles", Register.CYCLES_LO),
    ("ou_reads", Register.OU_READS_LO),
    ("adc_conversions", Register.ADC_CONVERSIONS_LO),
    ("stall_cycles", Register.STALL_CYCLES_LO),
    ("reduction_operands", Register.REDUCTION_OPERANDS_LO),
)

#: (name, register of the low word) of the per-node counters of a network run (the node
#: the NODE register selects).
NODE_COUNTERS = (
    ("node_cycles", Register.NODE_CYCLES_LO),
    ("node_input_stall", Register.NODE_INPUT_STALL_LO),
    ("node_output_stall", Register.NODE_OUTPUT_STALL_LO),
)

#: (name, register of the low word) of the per-image counters of a pipelined run
#: (docs/network.md section 6).
IMAGE_COUNTERS = (
    ("latency", Register.LATENCY_LO),
    ("interval", Register.INTERVAL_LO),
)

#: Registers a write changes (LAYER, N_VECTORS and N_SHARE only while no job is busy); a
#: write to any other address has no effect (the AXI4-Lite bus answers SLVERR / DECERR,
#: docs/integration.md).
WRITABLE = frozenset({Register.CTRL, Register.LAYER, Register.N_VECTORS, Register.N_SHARE,
                      Register.NODE, Register.N_IMAGES})
#: Registers a read returns (CTRL is write-only and reads as 0, like an unmapped address).
READABLE = frozenset(set(Register) - {Register.CTRL})
