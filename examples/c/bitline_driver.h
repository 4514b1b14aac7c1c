/* bitline_driver.h -- a small bare-metal driver for the bitline accelerator (example).
 *
 * Talks to the accelerator through its register map only (the generated <top>_regs.h of
 * `bitline verilog`, docs/integration.md) and moves stream data through hooks the
 * integrator provides (a DMA engine, a FIFO port, the AXI4-Stream ports of a soft CPU...).
 * No dynamic memory, no OS; C99.
 *
 * Register access: `read32` / `write32` take a BYTE offset (BITLINE_REG_*), as an
 * AXI4-Lite manager addresses the registers. bitline_mmio_read32 / bitline_mmio_write32
 * below do it for a memory-mapped IP at `base`.
 *
 * Streams: `push` offers up to `count` beats of a stream and returns how many the
 * accelerator (or the DMA) took; `pop` takes up to `count` output beats and returns how
 * many it got. Both may return 0 (nothing moved yet): the driver alternates between them
 * until the job is done, so a job never deadlocks on a full output stream. Beat formats
 * (BITLINE_*_TDATA_BITS): image bytes one per beat; an input beat is BITLINE_INPUT_TDATA_BITS
 * bits (one code per lane), stored in the buffer as (BITLINE_INPUT_TDATA_BITS / 8) bytes,
 * little-endian; an output beat likewise BITLINE_OUTPUT_TDATA_BITS bits, signed lanes.
 */
#ifndef BITLINE_DRIVER_H
#define BITLINE_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#ifndef BITLINE_REGS_HEADER
#define BITLINE_REGS_HEADER "bitline_top_regs.h"   /* <top>_regs.h of your build */
#endif
#include BITLINE_REGS_HEADER

enum bitline_stream { BITLINE_STREAM_IMAGE = 0, BITLINE_STREAM_INPUT = 1 };

/* Driver errors (negative); a positive return is the accelerator's BITLINE_ERROR_* code. */
enum {
    BITLINE_OK = 0,
    BITLINE_E_NOT_BITLINE = -1,   /* ID register is not BITLINE_IMAGE_MAGIC */
    BITLINE_E_VERSION = -2,       /* VERSION is not BITLINE_FORMAT_VERSION */
    BITLINE_E_DIGEST = -3,        /* DIGEST0..3 differ: hardware of another config */
    BITLINE_E_TIMEOUT = -4,       /* no progress after `poll_limit` polls */
};

typedef struct bitline_dev {
    void *ctx;                                           /* passed to every hook */
    uint32_t (*read32)(void *ctx, uint32_t offset);
    void (*write32)(void *ctx, uint32_t offset, uint32_t value);
    size_t (*push)(void *ctx, enum bitline_stream stream, const uint8_t *beats, size_t count);
    size_t (*pop)(void *ctx, uint8_t *beats, size_t count);
    unsigned long poll_limit;                            /* polls without progress */
} bitline_dev;

typedef struct bitline_counters {
    uint64_t cycles, ou_reads, adc_conversions, stall_cycles, reduction_operands;
} bitline_counters;

/* Check ID, VERSION and the config digest of the hardware. */
int bitline_identify(const bitline_dev *dev);
/* CTRL.LOAD, stream image.bin, wait for STATUS.programmed (or the loader's error code). */
int bitline_load_image(const bitline_dev *dev, const uint8_t *image, size_t bytes);
/* One layer job: LAYER, N_VECTORS (and N_SHARE when it differs: a layer with copies),
 * CTRL.START, stream `n_in` input beats, take `n_out` output beats (N_SHARE * n_outputs),
 * wait for STATUS.done. Returns 0, a BITLINE_ERROR_* code or a BITLINE_E_* error. */
int bitline_run_layer(const bitline_dev *dev, uint32_t layer, uint32_t n_vectors,
                      uint32_t n_share, const uint8_t *inputs, size_t n_in,
                      uint8_t *outputs, size_t n_out);
/* The 64-bit counters of the last job (low word first). */
void bitline_read_counters(const bitline_dev *dev, bitline_counters *counters);
/* CTRL.CLEAR_ERROR. */
void bitline_clear_error(const bitline_dev *dev);

/* Memory-mapped register hooks: ctx is the IP's base address. */
uint32_t bitline_mmio_read32(void *base, uint32_t offset);
void bitline_mmio_write32(void *base, uint32_t offset, uint32_t value);

#endif /* BITLINE_DRIVER_H */
