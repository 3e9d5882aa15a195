import sys

from keras_seq.cli import main

sys.exit(main())
