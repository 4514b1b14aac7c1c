/* fake_device.c -- runs bitline_driver.c against a fake register file (the suite's test,
 * tests/unit/test_cheader_driver.py; also a template for porting the hooks).
 *
 * The fake answers reads (ID, VERSION, DIGEST from the generated header, STATUS from a
 * small state machine, counters with distinct high and low words), records every register
 * access on stdout ("R offset value" / "W offset value") and takes stream beats a few at a
 * time (a push or pop may move nothing: the driver must retry). Outputs are
 * beat i = 3 * i - 7 (signed), so the test can check the driver's buffer handling.
 */
#include <stdio.h>
#include <string.h>

#include "bitline_driver.h"

#define IN_BEAT_BYTES (BITLINE_INPUT_TDATA_BITS / 8u)
#define OUT_BEAT_BYTES (BITLINE_OUTPUT_TDATA_BITS / 8u)

struct fake {
    uint32_t layer, n_vectors, n_share, n_layers, status;
    size_t image_bytes, image_expected, in_beats, in_expected, out_beats, out_expected;
    unsigned calls, loading_polls;
    uint8_t image_sum, input_sum;
};

static uint32_t fake_read32(void *ctx, uint32_t offset)
{
    struct fake *dev = ctx;
    uint32_t value = 0;
    switch (offset) {
    case BITLINE_REG_ID: value = BITLINE_IMAGE_MAGIC; break;
    case BITLINE_REG_VERSION: value = BITLINE_FORMAT_VERSION; break;
    case BITLINE_REG_DIGEST0: value = BITLINE_DIGEST0; break;
    case BITLINE_REG_DIGEST1: value = BITLINE_DIGEST1; break;
    case BITLINE_REG_DIGEST2: value = BITLINE_DIGEST2; break;
    case BITLINE_REG_DIGEST3: value = BITLINE_DIGEST3; break;
    case BITLINE_REG_LAYER: value = dev->layer; break;
    case BITLINE_REG_N_VECTORS: value = dev->n_vectors; break;
    case BITLINE_REG_N_SHARE: value = dev->n_share; break;
    case BITLINE_REG_N_LAYERS: value = dev->n_layers; break;
    case BITLINE_REG_STATUS:
        if ((dev->status & BITLINE_STATUS_LOADING) && dev->image_bytes == dev->image_expected
            && ++dev->loading_polls >= 2) {     /* the loader finishes a little later */
            dev->status = (dev->status & ~BITLINE_STATUS_LOADING) | BITLINE_STATUS_PROGRAMMED;
            dev->n_layers = 4;
        }
        value = dev->status;
        break;
    default:
        if (offset >= BITLINE_REG_CYCLES_LO && offset <= BITLINE_REG_REDUCTION_OPERANDS_HI)
            /* counter k: low word 1000 + k, high word k + 1 */
            value = (offset - BITLINE_REG_CYCLES_LO) % 8u ? (offset - BITLINE_REG_CYCLES_LO) / 8u + 1u
                                                          : 1000u + (offset - BITLINE_REG_CYCLES_LO) / 8u;
        break;
    }
    printf("R 0x%03x 0x%08x\n", (unsigned)offset, (unsigned)value);
    return value;
}

static void fake_write32(void *ctx, uint32_t offset, uint32_t value)
{
    struct fake *dev = ctx;
    printf("W 0x%03x 0x%08x\n", (unsigned)offset, (unsigned)value);
    if (offset == BITLINE_REG_LAYER) dev->layer = value;
    if (offset == BITLINE_REG_N_VECTORS) dev->n_vectors = dev->n_share = value;
    if (offset == BITLINE_REG_N_SHARE) dev->n_share = value;
    if (offset == BITLINE_REG_CTRL && (value & BITLINE_CTRL_LOAD)) {
        dev->status = BITLINE_STATUS_LOADING;
        dev->image_bytes = 0;
        dev->loading_polls = 0;
    }
    if (offset == BITLINE_REG_CTRL && (value & BITLINE_CTRL_CLEAR_ERROR))
        dev->status &= ~(BITLINE_STATUS_ERROR | BITLINE_STATUS_ERROR_CODE_MASK);
    if (offset == BITLINE_REG_CTRL && (value & BITLINE_CTRL_START)) {
        if (dev->layer >= dev->n_layers) {
            dev->status |= BITLINE_STATUS_ERROR | (BITLINE_ERROR_BAD_LAYER << BITLINE_STATUS_ERROR_CODE_SHIFT);
        } else {
            dev->status = (dev->status & ~BITLINE_STATUS_DONE) | BITLINE_STATUS_BUSY;
            dev->in_beats = dev->out_beats = 0;
        }
    }
}

static size_t fake_push(void *ctx, enum bitline_stream stream, const uint8_t *beats, size_t count)
{
    struct fake *dev = ctx;
    size_t take = ++dev->calls % 3 == 0 ? 0 : (count < 7 ? count : 7);   /* 0 every third call */
    size_t bytes = stream == BITLINE_STREAM_IMAGE ? take : take * IN_BEAT_BYTES;
    for (size_t i = 0; i < bytes; i++) {
        if (stream == BITLINE_STREAM_IMAGE) dev->image_sum += beats[i];
        else dev->input_sum += beats[i];
    }
    if (stream == BITLINE_STREAM_IMAGE) dev->image_bytes += take;
    else dev->in_beats += take;
    return take;
}

static size_t fake_pop(void *ctx, uint8_t *beats, size_t count)
{
    struct fake *dev = ctx;
    size_t ready = dev->in_beats / 2 > dev->out_beats ? dev->in_beats / 2 - dev->out_beats : 0;
    if (dev->in_beats == dev->in_expected) ready = dev->out_expected - dev->out_beats;
    size_t take = count < ready ? count : ready;
    if (take > 4) take = 4;
    for (size_t i = 0; i < take; i++) {
        int64_t value = 3 * (int64_t)(dev->out_beats + i) - 7;
        for (unsigned byte = 0; byte < OUT_BEAT_BYTES; byte++)   /* sign-extended, LE */
            beats[i * OUT_BEAT_BYTES + byte] = (uint8_t)((uint64_t)value >> (8 * byte));
    }
    dev->out_beats += take;
    if (dev->out_beats == dev->out_expected && take)
        dev->status = (dev->status & ~BITLINE_STATUS_BUSY) | BITLINE_STATUS_DONE;
    return take;
}

static int64_t output_value(const uint8_t *beat)
{
    uint64_t raw = 0;
    for (unsigned byte = 0; byte < OUT_BEAT_BYTES && byte < 8; byte++)
        raw |= (uint64_t)beat[byte] << (8 * byte);
    unsigned bits = BITLINE_OUTPUT_LANE_BITS;                   /* lane 0 */
    if (bits < 64 && (raw >> (bits - 1) & 1)) raw |= ~(uint64_t)0 << bits;
    else if (bits < 64) raw &= ((uint64_t)1 << bits) - 1;
    return (int64_t)raw;
}

static int job(bitline_dev *dev, struct fake *fake, uint32_t layer, uint32_t n_vectors,
               uint32_t n_share, size_t k, size_t o)
{
    uint8_t inputs[64 * IN_BEAT_BYTES], outputs[64 * OUT_BEAT_BYTES];
    size_t n_in = n_share * k, n_out = n_share * o;
    for (size_t i = 0; i < n_in * IN_BEAT_BYTES; i++) inputs[i] = (uint8_t)(i + 1);
    fake->in_expected = n_in;
    fake->out_expected = n_out;
    int rc = bitline_run_layer(dev, layer, n_vectors, n_share, inputs, n_in, outputs, n_out);
    printf("JOB %u rc %d outputs", (unsigned)layer, rc);
    for (size_t i = 0; rc == 0 && i < n_out; i++)
        printf(" %lld", (long long)output_value(outputs + i * OUT_BEAT_BYTES));
    printf("\n");
    return rc;
}

int main(void)
{
    struct fake fake;
    memset(&fake, 0, sizeof fake);
    bitline_dev dev = {&fake, fake_read32, fake_write32, fake_push, fake_pop, 100};
    uint8_t image[100];
    for (size_t i = 0; i < sizeof image; i++) image[i] = (uint8_t)(7 * i);

    printf("MACRO REG_STATUS %u REG_N_SHARE %u REG_CYCLES_LO %u CTRL_LOAD %u "
           "STATUS_PROGRAMMED %u ERROR_BAD_LAYER %u MAGIC %u VERSION %u\n",
           BITLINE_REG_STATUS, BITLINE_REG_N_SHARE, BITLINE_REG_CYCLES_LO, BITLINE_CTRL_LOAD,
           BITLINE_STATUS_PROGRAMMED, BITLINE_ERROR_BAD_LAYER, BITLINE_IMAGE_MAGIC,
           BITLINE_FORMAT_VERSION);
    printf("IDENTIFY rc %d\n", bitline_identify(&dev));
    fake.image_expected = sizeof image;
    int rc = bitline_load_image(&dev, image, sizeof image);
    printf("LOAD rc %d bytes %zu sum %u\n", rc, fake.image_bytes, fake.image_sum);
    job(&dev, &fake, 2, 3, 3, 4, 5);            /* one lane: N_SHARE = N_VECTORS */
    bitline_counters counters;
    bitline_read_counters(&dev, &counters);
    printf("COUNTERS %llu %llu %llu %llu %llu\n", (unsigned long long)counters.cycles,
           (unsigned long long)counters.ou_reads, (unsigned long long)counters.adc_conversions,
           (unsigned long long)counters.stall_cycles,
           (unsigned long long)counters.reduction_operands);
    job(&dev, &fake, 1, 5, 3, 2, 3);            /* a layer with 2 copies: N_SHARE written */
    job(&dev, &fake, 9, 1, 1, 2, 3);            /* a layer that is not loaded: BAD_LAYER */
    bitline_clear_error(&dev);
    printf("INPUT sum %u\n", fake.input_sum);
    return 0;
}
