"""The sandbox's seccomp profile.

A deny-list on top of the other defaults (no capabilities, no new privileges,
non-root): it refuses the system calls that inspect or modify other processes
(``ptrace``, ``process_vm_readv``/``writev``, ``kcmp``, ``pidfd_getfd``; the
Docker default allows ``ptrace``), create namespaces, mount filesystems, load
kernel code, or change the clock, plus rarely needed kernel attack surface
(``bpf``, ``userfaultfd``, ``io_uring``, ``perf_event_open``, keyrings), and
``memfd_create``, which would let code execute a binary it wrote into memory
although every writable mount is ``noexec``. Everything else is allowed; in
particular memory that is writable and executable cannot be refused this way
(``mprotect`` is how shared libraries load), so code can still run machine code
it writes itself (for example through ``ctypes``).
"""

from __future__ import annotations

import json
from functools import lru_cache

EPERM = 1
ENOSYS = 38

DENIED = (
    # other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    "move_pages",
    "migrate_pages",
    # namespaces and mounts
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    # kernel code, system state
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "vm86",
    "vm86old",
    "iopl",
    "ioperm",
    "syslog",
    "lookup_dcookie",
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_settime64",
    "clock_adjtime",
    "clock_adjtime64",
    "adjtimex",
    # extra kernel attack surface
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "fanotify_init",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # executing a file that lives only in memory
    "memfd_create",
)

# clone() flags that create namespaces; clone3 takes its flags in memory that
# seccomp cannot read, so it answers ENOSYS and the C library falls back to clone.
NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)


def profile() -> dict:
    """The profile as a Docker seccomp JSON document."""
    rules: list[dict] = [
        {"names": list(DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
    ]
    for flag in NAMESPACE_FLAGS:
        rules.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        )
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": rules,
    }


@lru_cache(maxsize=1)
def profile_json() -> str:
    return json.dumps(profile(), separators=(",", ":"))
