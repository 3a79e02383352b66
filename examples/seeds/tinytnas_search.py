# TinyTNAS's README walk-through ("Search.py"), run on tinyhil: only the import
# lines differ (tinyhil.nas.tinytnas for TinyTNAS.py and ModelBank.py), and the
# budgets can be shrunk from the environment (tests do; the defaults are the
# README's). The board's latency is priced too: TinyTNAS(..., board="qemu-m4") is
# the default, and constraints_specs may add "latency" (ms).
# Data: all_datasets/{train,test}_data_mitbih.npz (make_mitbih_like.py writes
# synthetic ones of the same format).
import os

import numpy as np
from keras.callbacks import ModelCheckpoint, EarlyStopping, ReduceLROnPlateau

from tinyhil.nas.tinytnas import TinyTNAS
from tinyhil.nas.tinytnas import *  # noqa: F403 -- the seed's `from ModelBank import *`

SEARCH_EPOCHS = int(os.environ.get("TINYTNAS_EPOCHS", 5))
SEARCH_MINUTES = float(os.environ.get("TINYTNAS_MINUTES", 2))
FINAL_EPOCHS = int(os.environ.get("TINYTNAS_FINAL_EPOCHS", 500))

# Load training data
train_data = np.load('all_datasets/train_data_mitbih.npz')
X = train_data['features']
Y = train_data['labels']

# Load test data
test_data = np.load('all_datasets/test_data_mitbih.npz')
X_test = test_data['features']
Y_test = test_data['labels']

batch_size = 32
input_shape = (X.shape[1:])
learning_rate = 0.001
train_ds = (X, Y)
val_ds = (X_test, Y_test)
num_class = 5
# lossf: 0 for one-hot labels (categorical crossentropy), 1 for class indices (sparse)
lossf = 0
constraints_specs = {"ram": 1024 * 20,    # 'ram' in bytes
                     "flash": 1024 * 64,  # 'flash' in bytes
                     "macc": 60 * 1000}
algo = TinyTNAS(train_ds=train_ds, val_ds=None, input_shape=input_shape,
                num_class=num_class, learning_rate=learning_rate, constraints_specs=constraints_specs)

# Perform Neural Architecture Search
results = algo.search(epochs=SEARCH_EPOCHS, lossf=lossf, search_time_minute=SEARCH_MINUTES)

best_k = results[0]
best_c = results[1]
best_acc = results[2]
best_ram = results[3]
best_flash = results[4]
best_macc = results[5]
architecure_explored_count = algo.explored_model_count
architecture_search_path = algo.feasible_solutions
architecure_explored = algo.explored_model_configs
infeasible_architectures = algo.infeasible_configarations
print({"best_k": best_k, "best_c": best_c, "best_acc": best_acc, "best_ram": best_ram,
       "best_flash": best_flash, "best_macc": best_macc, "best_latency_ms": algo.LATENCY,
       "architecure_explored_count": architecure_explored_count,
       "architecture_search_path": architecture_search_path,
       "architecure_explored": architecure_explored,
       "infeasible_architectures": infeasible_architectures})

# Retrain the best architecture with more epochs
file_path = "bestmodel.h5"
checkpoint = ModelCheckpoint(file_path, monitor='val_acc', verbose=1, save_best_only=True, mode='max')
early = EarlyStopping(monitor="val_acc", mode="max", patience=5, verbose=1)
redonplat = ReduceLROnPlateau(monitor="val_acc", mode="max", patience=3, verbose=2)
callbacks_list = [checkpoint, early, redonplat]  # early

best_model, _, _, _ = BuildModelwithSpecs(k=best_k, c=best_c, num_class=num_class, ds=train_ds,  # noqa: F405
                                          input_shape=input_shape, learning_rate=learning_rate, lossf=lossf)
print(best_model)
# The README writes best_model[0] here; a Keras model cannot be indexed (in the
# seed either: its own search.py passes best_model).
max_val_Acc = ModelTraning(best_model, train_ds, val_ds, epochs=FINAL_EPOCHS)  # noqa: F405
print(max_val_Acc)
