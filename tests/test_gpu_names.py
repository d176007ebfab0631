import pytest

from exporter.sources.gpu.names import hardware_of


@pytest.mark.parametrize(
    ("name", "hardware"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),  # SXM
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA H100 NVL", "H100"),
        ("NVIDIA-H100-80GB-HBM3", "H100"),  # dcgm-exporter --replace-blanks-in-model-name
        ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", "H100"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 NVL", "H200"),
        ("NVIDIA H20", "H20"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA GB200", "GB200"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),  # 40 and 80 GB are priced apart
        ("NVIDIA A100 80GB PCIe", "A100-80GB"),
        ("NVIDIA A100-PCIE-40GB", "A100-40GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA-A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA A100-SXM4-40GB MIG 3g.20gb", "A100-40GB"),
        ("NVIDIA A100-SXM4-80GB MIG 1g.10gb", "A100-80GB"),
        ("NVIDIA A100", "A100"),  # memory not said: not guessed
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA A10G", "A10G"),
        ("Tesla T4", "T4"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX-PRO-6000"),
    ],
)
def test_every_form_factor_maps_to_its_type(name: str, hardware: str) -> None:
    assert hardware_of(name) == hardware


def test_an_unknown_name_is_kept_so_it_shows_up_unpriced() -> None:
    assert hardware_of("  Instinct MI300X ") == "Instinct MI300X"
    assert hardware_of("") == "unknown"


def test_overrides_by_exact_name_win_also_for_mig_and_dashed_forms() -> None:
    names = {"NVIDIA H100 NVL": "H100-NVL"}
    assert hardware_of("NVIDIA H100 NVL", names) == "H100-NVL"
    assert hardware_of("NVIDIA H100 NVL MIG 1g.12gb", names) == "H100-NVL"
    assert hardware_of("NVIDIA-H100-NVL", names) == "H100-NVL"
    assert hardware_of("NVIDIA H100 PCIe", names) == "H100"
