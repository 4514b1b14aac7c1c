/* bitline_driver.c -- the example driver of bitline_driver.h (docs/integration.md). */
#include "bitline_driver.h"

#define IN_BEAT_BYTES (BITLINE_INPUT_TDATA_BITS / 8u)
#define OUT_BEAT_BYTES (BITLINE_OUTPUT_TDATA_BITS / 8u)

uint32_t bitline_mmio_read32(void *base, uint32_t offset)
{
    return *(volatile uint32_t *)((uintptr_t)base + offset);
}

void bitline_mmio_write32(void *base, uint32_t offset, uint32_t value)
{
    *(volatile uint32_t *)((uintptr_t)base + offset) = value;
}

static uint32_t status_of(const bitline_dev *dev)
{
    return dev->read32(dev->ctx, BITLINE_REG_STATUS);
}

/* Poll STATUS until (status & mask) == want; the loader's / job's error code wins. */
static int wait_status(const bitline_dev *dev, uint32_t mask, uint32_t want)
{
    for (unsigned long poll = 0; poll < dev->poll_limit; poll++) {
        uint32_t status = status_of(dev);
        if (status & BITLINE_STATUS_ERROR)
            return (int)BITLINE_STATUS_ERROR_CODE(status);
        if ((status & mask) == want)
            return BITLINE_OK;
    }
    return BITLINE_E_TIMEOUT;
}

int bitline_identify(const bitline_dev *dev)
{
    static const uint32_t digest[4] = {BITLINE_DIGEST0, BITLINE_DIGEST1, BITLINE_DIGEST2,
                                       BITLINE_DIGEST3};
    if (dev->read32(dev->ctx, BITLINE_REG_ID) != BITLINE_IMAGE_MAGIC)
        return BITLINE_E_NOT_BITLINE;
    if (dev->read32(dev->ctx, BITLINE_REG_VERSION) != BITLINE_FORMAT_VERSION)
        return BITLINE_E_VERSION;
    for (uint32_t word = 0; word < 4; word++)
        if (dev->read32(dev->ctx, BITLINE_REG_DIGEST0 + 4u * word) != digest[word])
            return BITLINE_E_DIGEST;
    return BITLINE_OK;
}

void bitline_clear_error(const bitline_dev *dev)
{
    dev->write32(dev->ctx, BITLINE_REG_CTRL, BITLINE_CTRL_CLEAR_ERROR);
}

int bitline_load_image(const bitline_dev *dev, const uint8_t *image, size_t bytes)
{
    size_t sent = 0;
    unsigned long idle = 0;
    dev->write32(dev->ctx, BITLINE_REG_CTRL, BITLINE_CTRL_LOAD);
    while (sent < bytes) {
        size_t moved = dev->push(dev->ctx, BITLINE_STREAM_IMAGE, image + sent, bytes - sent);
        sent += moved;
        if (moved) {
            idle = 0;
        } else if (++idle >= dev->poll_limit) {
            return BITLINE_E_TIMEOUT;
        } else if (status_of(dev) & BITLINE_STATUS_ERROR) {
            break;      /* the loader refused the image: it swallows the rest anyway */
        }
    }
    return wait_status(dev, BITLINE_STATUS_LOADING | BITLINE_STATUS_PROGRAMMED,
                       BITLINE_STATUS_PROGRAMMED);
}

int bitline_run_layer(const bitline_dev *dev, uint32_t layer, uint32_t n_vectors,
                      uint32_t n_share, const uint8_t *inputs, size_t n_in,
                      uint8_t *outputs, size_t n_out)
{
    size_t sent = 0, received = 0;
    unsigned long idle = 0;
    dev->write32(dev->ctx, BITLINE_REG_LAYER, layer);
    dev->write32(dev->ctx, BITLINE_REG_N_VECTORS, n_vectors);   /* also sets N_SHARE */
    if (n_share != n_vectors)                                   /* a layer with copies */
        dev->write32(dev->ctx, BITLINE_REG_N_SHARE, n_share);
    dev->write32(dev->ctx, BITLINE_REG_CTRL, BITLINE_CTRL_START);
    while (sent < n_in || received < n_out) {
        size_t moved = 0, got = 0;
        if (sent < n_in) {
            moved = dev->push(dev->ctx, BITLINE_STREAM_INPUT, inputs + sent * IN_BEAT_BYTES,
                              n_in - sent);
            sent += moved;
        }
        if (received < n_out) {
            got = dev->pop(dev->ctx, outputs + received * OUT_BEAT_BYTES, n_out - received);
            received += got;
        }
        if (moved || got) {
            idle = 0;
        } else if (++idle >= dev->poll_limit) {
            return BITLINE_E_TIMEOUT;
        } else {
            uint32_t status = status_of(dev);
            if (status & BITLINE_STATUS_ERROR)
                return (int)BITLINE_STATUS_ERROR_CODE(status);
        }
    }
    return wait_status(dev, BITLINE_STATUS_BUSY | BITLINE_STATUS_DONE, BITLINE_STATUS_DONE);
}

void bitline_read_counters(const bitline_dev *dev, bitline_counters *counters)
{
    static const uint32_t offsets[BITLINE_N_COUNTERS] = {
        BITLINE_COUNTER_CYCLES, BITLINE_COUNTER_OU_READS, BITLINE_COUNTER_ADC_CONVERSIONS,
        BITLINE_COUNTER_STALL_CYCLES, BITLINE_COUNTER_REDUCTION_OPERANDS};
    uint64_t *fields[BITLINE_N_COUNTERS] = {
        &counters->cycles, &counters->ou_reads, &counters->adc_conversions,
        &counters->stall_cycles, &counters->reduction_operands};
    for (unsigned index = 0; index < BITLINE_N_COUNTERS; index++) {
        uint64_t low = dev->read32(dev->ctx, offsets[index]);
        uint64_t high = dev->read32(dev->ctx, offsets[index] + 4u);
        *fields[index] = low | high << 32;
    }
}
