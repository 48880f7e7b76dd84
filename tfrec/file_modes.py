"""The permissions files and directories get when created the usual way, for the temporary ones.

`tempfile.mkdtemp` and `mkstemp` create private entries (0700, 0600) whatever
the umask; renamed into place they would stay private, and a TF Serving
running as another user (in a container, say) could not read an export. The
staged directories and files are given the mode `open` and `mkdir` would have
given them under the process's umask before they are renamed.

Example:

>>> import os, tempfile
>>> path = tempfile.mkdtemp()
>>> apply_umask(path)
>>> oct(os.stat(path).st_mode & 0o777) == oct(0o777 & ~current_umask())
True
"""

import os
import stat


def current_umask() -> int:
    """The process's umask: from /proc where Linux has it (changing nothing), else by setting it and
    putting it back."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str) -> None:
    """Gives `path` (a file or directory) the mode a plain create would have given it under the umask."""
    base = 0o777 if stat.S_ISDIR(os.stat(path).st_mode) else 0o666
    os.chmod(path, base & ~current_umask())
