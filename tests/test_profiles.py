"""Device profiles: loading, validation messages, discovery and emulation."""

import numpy as np
import pytest
from helpers import edited_profile

import duhl_cl as dc
from duhl_cl.device.discovery import enumerate_devices, host_cpu_profile, matches, open_device
from duhl_cl.device.profiles import ProfileError, format_size, load_profile, parse_size

SHIPPED = [
    "pocl-cpu",
    "intel-cpu",
    "gpu-8gb",
    "gpu-16gb",
    "gpu-80gb",
    "fpga-u280-hbm",
    "fpga-u250-ddr",
    "fpga-onchip",
    "fpga-intel-d5005",
    "oclgrind",
]


def test_every_shipped_profile_is_listed():
    assert sorted(SHIPPED) == dc.list_profiles()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load(name):
    p = load_profile(name)
    assert p.name == name and p.budget > 0 and p.max_alloc <= p.budget
    assert p.kernel_variant in ("serial", "tpa", "bucketed")
    assert p.banks * p.bank_size >= p.budget and p.source
    if name.startswith("fpga"):  # FPGA profiles: float32, serial pipelines, prebuilt
        assert (p.precision, p.kernel_variant, p.build) == ("float32", "serial", "prebuilt")


@pytest.mark.parametrize("name", ["fpga-u250-ddr", "fpga-onchip", "fpga-intel-d5005"])
def test_fpga_profiles_emulate_with_their_banks(name, regression_data):
    X, y = regression_data
    est = dc.Lasso(alpha=0.05, device=name, emulate=True, memory_budget="30%").fit(X, y)
    p = load_profile(name)
    assert est.stats_["emulated"] and len(est.stats_["bank_peak"]) == p.banks
    assert est.stats_["kernel_variant"] == "serial" and est.stats_["dtype"] == "float32"
    assert est.converged_ and est.device_.startswith(f"{name} (emulated on {host_cpu_profile()})")


def test_u280_banks():
    p = load_profile("fpga-u280-hbm")
    assert (p.banks, p.bank_size, p.budget) == (32, 256 * 2**20, 8 * 2**30)
    assert p.precision == "float32" and p.build == "prebuilt"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("256 MiB", 256 * 2**20),
        ("8 GiB", 8 * 2**30),
        ("1.5GB", 1_500_000_000),
        (4096, 4096),
        ("64", 64),
    ],
)
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["12 parsecs", "-1 MiB", 0, True, "MiB"])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def _edit(tmp_path, old, new):
    return edited_profile(tmp_path, [(old, new)])


def test_unknown_key_names_file_key_and_allowed(tmp_path):
    p = _edit(tmp_path, "banks = 1", "banks = 1\nbankz = 2")
    with pytest.raises(
        ProfileError,
        match=r"edited.toml: unknown key 'memory.bankz'; allowed in \[memory\]: budget, max_alloc, banks",
    ):
        load_profile(p)


def test_missing_key(tmp_path):
    p = _edit(tmp_path, 'precision = "float32"\n', "")
    with pytest.raises(ProfileError, match=r"edited.toml: missing key 'kernel.precision'"):
        load_profile(p)


def test_bad_value_says_given_and_allowed(tmp_path):
    p = _edit(tmp_path, 'variant = "serial"', 'variant = "fast"')
    with pytest.raises(
        ProfileError,
        match=r"bad value for 'kernel.variant': given 'fast', allowed: 'serial', 'tpa', 'bucketed'",
    ):
        load_profile(p)
    p = _edit(tmp_path, 'budget = "2 GiB"', 'budget = "2 GiGa"')
    with pytest.raises(
        ProfileError, match=r"bad value for 'memory.budget': .*cannot read '2 GiGa'"
    ):
        load_profile(p)


def test_malformed_toml(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("name = \n")
    with pytest.raises(ProfileError, match="broken.toml: not valid TOML"):
        load_profile(p)


def test_user_profile_by_path(tmp_path, device):
    p = _edit(tmp_path, 'budget = "2 GiB"', 'budget = "64 MiB"')
    d = open_device(str(p))
    assert d.profile.budget == 64 * 2**20 and not d.emulated


def test_discovery_matches_profile(device):
    infos = [i for i, _ in enumerate_devices()]
    assert any(matches(load_profile(host_cpu_profile()), i) for i in infos)


def test_emulated_profile_runs_and_is_labelled(device):
    d = open_device("fpga-u280-hbm", emulate=True)
    assert d.emulated and "emulated" in d.label()
    assert d.profile.max_alloc <= 256 * 2**20
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 5)).astype(np.float32)
    est = dc.Lasso(alpha=0.1, device="fpga-u280-hbm", emulate=True).fit(X, X[:, 0])
    assert "emulated" in est.device_ and est.stats_["emulated"]


def test_format_size():
    assert format_size(3 * 2**20) == "3.0 MiB"


def test_profile_values_that_make_no_sense_are_refused(tmp_path, device):
    bad = edited_profile(tmp_path, [("host_alignment = 64", "host_alignment = 48")], "a.toml")
    with pytest.raises(ProfileError, match="host_alignment must be a power of two.*got 48"):
        load_profile(bad)
    units = device.info.compute_units  # the whole device's (the fixture's is a sub-device)
    many = edited_profile(
        tmp_path, [("device_compute_units = 1", f"device_compute_units = {units + 1}")], "u.toml"
    )
    from duhl_cl.device.discovery import DeviceError

    with pytest.raises(DeviceError, match=f"has {units} compute units; set it to at most {units}"):
        open_device(many)
