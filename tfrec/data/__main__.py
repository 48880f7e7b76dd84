"""Entry point of `python -m tfrec.data` (see `tfrec.data.cli`)."""

from absl import flags

from tfrec import quiet
from tfrec.data import cli

if __name__ == "__main__":
    quiet.configure(__name__)  # before TensorFlow is imported (by convert)
    flags.adopt_module_key_flags(cli)
    cli.run()
