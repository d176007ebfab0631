from pathlib import Path

import pytest

from exporter.sources.kube.cgroup import PodRef, pod_of_cgroup, pod_of_pid

UID = "0d9e1c1a-5b3f-4a61-9b40-8e3c2f7d1a22"
CID = "4f1b2c3d" * 8


@pytest.mark.parametrize(
    "text",
    [
        # cgroup v1, cgroupfs driver (one line per hierarchy)
        f"12:pids:/kubepods/burstable/pod{UID}/{CID}\n11:memory:/kubepods/burstable/pod{UID}/{CID}\n",
        # guaranteed QoS: no class directory
        f"0::/kubepods/pod{UID}/{CID}\n",
        # cgroup v2, systemd driver, containerd
        "0::/kubepods.slice/kubepods-besteffort.slice/"
        f"kubepods-besteffort-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope\n",
        # CRI-O under systemd
        "0::/kubepods.slice/kubepods-burstable.slice/"
        f"kubepods-burstable-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope\n",
    ],
)
def test_every_kubelet_cgroup_form_names_the_pod_and_container(text: str) -> None:
    assert pod_of_cgroup(text) == PodRef(UID, CID)


def test_a_process_outside_kubernetes_has_no_pod() -> None:
    assert pod_of_cgroup("0::/system.slice/nvidia-persistenced.service\n") is None
    assert pod_of_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") is None
    assert pod_of_cgroup("") is None


def test_the_pod_sandbox_cgroup_has_a_pod_but_no_container() -> None:
    assert pod_of_cgroup(f"0::/kubepods/burstable/pod{UID}\n") == PodRef(UID, "")


def test_reading_a_proc_tree(tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "cgroup").write_text(f"0::/kubepods/pod{UID}/{CID}\n")
    assert pod_of_pid(4242, str(tmp_path)) == PodRef(UID, CID)
    assert pod_of_pid(4243, str(tmp_path)) is None  # exited since NVML listed it
