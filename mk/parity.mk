# make parity [EPOCHS=3] [SEEDS="0 1 2"] [MODEL=resnet20] [LOADERS=1] [PARITY_DATA=dir] [PARITY_OUT=docs]
# The reference recipe for E epochs on full CIFAR-10 in npid and in the PyTorch peer
# (bench/peer/npid_peer.py): both kNN curves and wall times, written to docs/parity.md and
# docs/parity.png. Takes minutes per epoch per side; not part of `make check` or CI.
.PHONY: parity
parity: all
	NPID_BIN=$(abspath $(BUILD)) EPOCHS="$(or $(EPOCHS),3)" SEEDS="$(or $(SEEDS),0)" MODEL="$(or $(MODEL),resnet20)" \
	LOADERS="$(or $(LOADERS),1)" PARITY_DATA="$(PARITY_DATA)" PARITY_OUT="$(PARITY_OUT)" \
	bench/parity.sh
# make parity-report [EPOCHS=n] [MODEL=resnet20] [PARITY_OUT=docs]: rewrite parity.md and
# parity.png from the runs stored in parity-runs.jsonl, running nothing (without EPOCHS: the
# stored epoch count with the most seeds).
.PHONY: parity-report
parity-report:
	EPOCHS="$(EPOCHS)" MODEL="$(or $(MODEL),resnet20)" PARITY_OUT="$(PARITY_OUT)" \
	bench/parity.sh --report
