"""Host interface: the control and status registers and performance counters in hardware.

The register map (addresses, bits, error codes) is defined in
:mod:`bitline.hw.spec.registers`; this module implements it.
"""



from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.image import FORMAT_VERSION, MAGIC_WORD, config_digest_bytes
from bitline.hw.spec.registers import (
    COUNTER_BITS,
    COUNTERS,
    CSR_ADDR_BITS,
    IMAGE_COUNTERS,
    CSR_DATA_BITS,
    NODE_COUNTERS,
    VECTOR_BITS,
    Register,
    Status,
)

__all__ = ["CSRSignature", "HostInterface"]

class CSRSignature(wiring.Signature):
    """The register bus, seen from the host (initiator)."""

    def __init__(self):
        super().__init__({
            "addr": Out(CSR_ADDR_BITS),
            "w_en": Out(1),
            "w_data": Out(CSR_DATA_BITS),
            "r_en": Out(1),
            "r_data": In(CSR_DATA_BITS),
        })

    def __eq__(self, other):
        return type(self) is type(other)

    __hash__ = None


class HostInterface(wiring.Component):
    """Register file and performance counters.

    Attributes
    ----------
    csr: In(CSRSignature())
        The register bus.
    start, load, clear_error, run_network: Out(1)
        One-cycle pulses from CTRL writes.
    layer_index: Out(clog2(max_layers)), n_vectors, n_share: Out(VECTOR_BITS)
        Job parameters (a write of N_VECTORS sets ``n_share`` too).
    busy, done, loading, programmed: In(1)
    error: In(8)
        Current error code (0: none).
    n_layers: In(clog2(max_layers + 1))
    cycle, stall: In(1); reads, conversions, operands: In(...)
        Per-cycle counter increments.
    n_nodes: In(clog2(max_nodes + 1)); node_select: Out(clog2(max_nodes))
        Only with ``config.network``: the N_NODES register, and the NODE register's next
        value (the node counters' memory address).
    node_cycles, node_input_stall, node_output_stall: In(COUNTER_BITS)
        Only with ``config.network``: node ``node_select``'s counters (one cycle after it).
    n_images: Out(32); latency, interval: In(COUNTER_BITS)
        Only with ``config.pipeline``: the N_IMAGES register (written while not busy) and
        the last run's LATENCY and INTERVAL (docs/network.md section 6).
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        increments = config.n_xbars * config.adcs_per_xbar
        members = {
            "csr": In(CSRSignature()),
            "start": Out(1),
            "load": Out(1),
            "clear_error": Out(1),
            "run_network": Out(1),
            "layer_index": Out(clog2(config.max_layers)),
            "n_vectors": Out(VECTOR_BITS),
            "n_share": Out(VECTOR_BITS),
            "busy": In(1),
            "done": In(1),
            "loading": In(1),
            "programmed": In(1),
            "error": In(8),
            "n_layers": In(clog2(config.max_layers + 1)),
            "cycle": In(1),
            "reads": In(range(config.n_xbars + 1)),
            "conversions": In(range(increments + 1)),
            "stall": In(1),
            "operands": In(range(config.n_xbars + 1)),
        }
        if config.network:
            members.update({
                "n_nodes": In(clog2(config.max_nodes + 1)),
                "node_select": Out(clog2(config.max_nodes)),
                **{name: In(COUNTER_BITS) for name, _ in NODE_COUNTERS},
            })
        if config.pipeline:
            members.update({
                "n_images": Out(CSR_DATA_BITS),
                **{name: In(COUNTER_BITS) for name, _ in IMAGE_COUNTERS},
            })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        csr = self.csr
        write = csr.w_en
        with m.If(write & (csr.addr == Register.CTRL)):
            m.d.comb += [
                self.start.eq(csr.w_data[0]),
                self.load.eq(csr.w_data[1]),
                self.clear_error.eq(csr.w_data[2]),
                self.run_network.eq(csr.w_data[3]),
            ]
        # the job's parameters stay fixed while it runs
        with m.If(write & (csr.addr == Register.LAYER) & ~self.busy):
            m.d.sync += self.layer_index.eq(csr.w_data)
        with m.If(write & (csr.addr == Register.N_VECTORS) & ~self.busy):
            m.d.sync += [self.n_vectors.eq(csr.w_data), self.n_share.eq(csr.w_data)]
        with m.If(write & (csr.addr == Register.N_SHARE) & ~self.busy):
            m.d.sync += self.n_share.eq(csr.w_data)

        # a network run clears the counters like a job (only on hardware that runs one)
        begins = self.start | self.run_network if self.config.network else self.start
        counters = {}
        for name, increment in (("cycles", self.cycle), ("ou_reads", self.reads),
                                ("adc_conversions", self.conversions),
                                ("stall_cycles", self.stall),
                                ("reduction_operands", self.operands)):
            counter = Signal(COUNTER_BITS, name=name)
            with m.If(begins & ~self.busy):
                m.d.sync += counter.eq(0)
            with m.Elif(self.busy):
                m.d.sync += counter.eq(counter + increment)
            counters[name] = counter

        status = Signal(CSR_DATA_BITS)
        m.d.comb += status.eq(
            self.busy * Status.BUSY | self.done * Status.DONE
            | (self.error != 0) * Status.ERROR | self.loading * Status.LOADING
            | self.programmed * Status.PROGRAMMED | (self.error << 8))

        digest = config_digest_bytes(self.config)
        readable = {
            Register.ID: MAGIC_WORD,
            Register.VERSION: FORMAT_VERSION,
            Register.STATUS: status,
            Register.LAYER: self.layer_index,
            Register.N_VECTORS: self.n_vectors,
            Register.N_SHARE: self.n_share,
            Register.N_LAYERS: self.n_layers,
        }
        for word in range(4):
            readable[Register.DIGEST0 + word] = int.from_bytes(digest[4 * word:4 * word + 4],
                                                               "little")
        for name, low in COUNTERS:
            readable[low] = counters[name][:32]
            readable[low + 1] = counters[name][32:]
        if self.config.network:
            # node_select is the register's next value: the counters' memory, read
            # synchronously, shows the new node when the next cycle's read is decoded
            node = Signal.like(self.node_select, name="node")
            m.d.comb += self.node_select.eq(node)
            with m.If(write & (csr.addr == Register.NODE)):
                m.d.sync += node.eq(csr.w_data)
                m.d.comb += self.node_select.eq(csr.w_data)
            readable[Register.N_NODES] = self.n_nodes
            readable[Register.NODE] = node
            for name, low in NODE_COUNTERS:
                value = getattr(self, name)
                readable[low] = value[:32]
                readable[low + 1] = value[32:]
        if self.config.pipeline:
            # N_IMAGES keeps the run's count while it runs (like LAYER for a job)
            with m.If(write & (csr.addr == Register.N_IMAGES) & ~self.busy):
                m.d.sync += self.n_images.eq(csr.w_data)
            readable[Register.N_IMAGES] = self.n_images
            for name, low in IMAGE_COUNTERS:
                value = getattr(self, name)
                readable[low] = value[:32]
                readable[low + 1] = value[32:]
        with m.If(csr.r_en):
            with m.Switch(csr.addr):
                for address, value in readable.items():
                    with m.Case(int(address)):
                        m.d.sync += csr.r_data.eq(value)
                with m.Default():
                    m.d.sync += csr.r_data.eq(0)
        return m
