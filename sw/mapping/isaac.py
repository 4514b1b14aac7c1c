"""The ``isaac`` strategy: ISAAC's bit-sliced, dense baseline (docs/mapping.md).

Each weight's magnitude is split into ``cell_bits``-wide slices (digits) stored in adjacent
columns, least significant first, with shift ``slice * cell_bits``. Signs are differential:
output channel ``n`` owns ``2 * n_digits`` adjacent columns, first the digits of its
positive weights, then those of its negative weights (``sign = 1``: subtract). Column order
is therefore channel-major ``(n, sign, digit)``. Inputs fill ``exact_rows_per_ou`` rows of
each row group (85 of the 128 rows with the ``isaac`` preset, in place of ISAAC's
flipped-weight encoding), row groups of a crossbar take consecutive chunks, and crossbars
tile the matrix row tile by column tile. Every populated OU (a row group holding a chunk,
a column group holding at least one column id) is read with every slice, whatever it
holds: a column that holds a segment is valid even if all-zero, so hollow OUs are read.
Row groups past the layer's last chunk and column groups past its last column are not
read (they hold no weights; ISAAC would not drive or convert them either).

With the offset encoding (``encoding="offset"``, ISAAC's own) a channel owns ``n_digits``
adjacent columns holding the digits of ``w + B`` (``B = 2**magnitude_bits``, one bit more
than ``|w|``), all with ``sign = 0``, and the output path subtracts ``B * sum(x)``
(docs/contract.md section 4): about half the columns of the differential encoding.
"""

from __future__ import annotations

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sw.mapping.layout import DENSE, LayerBits, Placement, Spread, regular_placement

__all__ = ["place_isaac"]


def place_isaac(bits: LayerBits, config: AcceleratorConfig, spread: Spread = DENSE) -> Placement:
    """Return the ISAAC placement of a layer: channel-major columns, populated OUs read."""
    digit, sign, channel = bits.split_q(np.arange(bits.n_q))
    position = (channel * bits.n_signs + sign) * bits.n_digits + digit
    return regular_placement(bits, config, position, spread)
