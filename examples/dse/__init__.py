"""Example design-space studies for ``bitline dse`` (package data, no code; docs/dse.md).

* ``ou_size.toml``: the papers' OU size sweep (9x8 ... 128x128), every strategy;
* ``adc_bits.toml``: ADC resolution 3 ... 8 bits, every strategy;
* ``bits.toml``: weight-bit budgets and BWQ-A activation budgets of BWQ, with accuracy;
* ``cluster.toml``: 9,600 points (4 networks x 5 strategies x OU x crossbar x cell bits x
  budgets x stuck-at rates, with accuracy under the analog model): sized for a cluster.
"""
