"""python -m lcmt_tf COMMAND [flags]: the `lcmt` command (lcmt_tf.cli.main)."""

from lcmt_tf.cli.main import main

main()
