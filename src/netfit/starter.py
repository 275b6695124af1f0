"""The annotated starter spec that ``netfit init`` writes."""

STARTER_SPEC = '''\
# netfit spec: train it with `netfit train THIS_FILE`, change a field with --set key=value.
# Every key is optional except a data source; `netfit schema` prints the full reference.

[model]
input = "auto"          # input width, or "auto" to take it from the data
hidden = [512, 256]     # hidden layer sizes, first to last
activation = "relu"     # relu, leaky_relu, gelu, silu, tanh, sigmoid
batchnorm = false       # BatchNorm1d after each hidden Linear layer
dropout = 0.0           # dropout rate after each hidden block (0 = off)
output = "auto"         # number of classes (or regression targets), or "auto" from the data
init = "default"        # default (PyTorch's), kaiming or xavier

[data]
dataset = "mnist-sample"  # built-in: mnist-sample, digits, diabetes, mnist, fashion-mnist, kmnist
# path = "table.csv"      # ...or your own file: .csv, .npz, .npy, or IDX files
# target = "label"        # the CSV column to predict (a list of columns for several regression targets)
# header = true           # false if the CSV has no header row (columns are then f0, f1, ...)
# test_path = "test.csv"  # a separate test file (else the dataset's own test part)
val_fraction = 0.1        # share of training rows held out for validation (0 = none)
scaling = "auto"          # auto, none, divide_by_255, standardize (fitted on training rows only)

[train]
task = "auto"             # classification, binary, regression; auto: inferred from the targets (printed first)
# loss = "mse"            # cross_entropy, bce, mse, l1, huber; left out, it follows the task
optimizer = "adam"        # sgd, adam, adamw, rmsprop; options as a table, e.g.:
# [train.optimizer]
# name = "sgd"
# momentum = 0.9
# nesterov = true
lr = 1e-3                 # learning rate
weight_decay = 0.0        # L2 penalty (decoupled for adamw)
batch_size = 64           # examples per step
epochs = 10               # passes over the training rows
print_every = 1           # progress line every N epochs
seed = 0                  # same seed, same spec, same CPU: the same weights, bit for bit
device = "auto"           # auto, cpu, cuda, mps
checkpoint_every = 1      # resumable checkpoint every N epochs: `netfit train --resume RUN` continues
keep_checkpoints = 3      # the latest K are kept (the best epoch's weights are kept apart)
on_nonfinite = "stop"     # NaN/inf loss or gradient: stop (last good checkpoint stays) or skip_step

# Stop when validation stops improving and keep the best weights:
# [train.early_stopping]
# metric = "val_loss"     # val_loss, val_accuracy, val_r2
# patience = 5
'''
