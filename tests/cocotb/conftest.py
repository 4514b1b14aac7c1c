"""Fixtures of the cocotb end-to-end tests (helpers in ``support.e2e``)."""

from __future__ import annotations

import pytest

from support.e2e import Workloads, design_cache


@pytest.fixture(scope="session")
def workloads(tmp_path_factory):
    """:class:`support.e2e.Workloads`: bundles compiled on first use, once per worker."""
    return Workloads(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="session")
def designs():
    """``designs(name, crossbar="external")``: bench designs, generated once per worker."""
    return design_cache()
