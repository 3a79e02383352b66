# Tiny-TimeNAS's walk-through (its paper: "Application: Human Activity
# Recognition for Arduino Nano"), run on tinyhil: only the import lines differ
# (tinyhil.nas.timenas for tiny_tnas.*). The constants the paper leaves to the
# reader are set here (N_CANDIDATES can be shrunk from the environment; tests do).
# Candidates are priced on the board's LUT (board="qemu-m4" by default; pass
# max_latency= for a latency limit), and the int8 model can go to the board
# with `tinyhil run MODEL_TFLITE` / `tinyhil export-c MODEL_TFLITE`.
import os, sys, gc, warnings, logging, json, time, glob, math, random  # noqa: E401,F401
import tensorflow as tf  # noqa: F401
import pandas as pd  # noqa: F401
import numpy as np  # noqa: F401

from tensorflow import keras  # noqa: F401

from tinyhil.nas.timenas import Searcher
from tinyhil.nas.timenas import quantize_model
from tinyhil.nas.timenas import get_model_size
from tinyhil.nas.timenas import load_dataset, AVAILABEL_DATASETS  # noqa: F401
from tinyhil.nas.timenas import evaluate_classification

MAX_RAM, MAX_FLASH = 128, 256  # kB, as the paper's first example
N_CANDIDATES = int(os.environ.get("TIMENAS_CANDIDATES", 100))
MODEL_TFLITE = os.environ.get("TIMENAS_MODEL", "model.tflite")

task = 'classification'  # define the target analysis task
x_train, y_train, x_test, y_test = load_dataset(task, data_name='BasicMotions')

# run the search
searcher = Searcher(MAX_RAM, MAX_FLASH, task, x_train, y_train)
cand_models = searcher.run_search(N_CANDIDATES, top_k=1, proxy='zico')

# compile the found model
model = cand_models[0]['model']
model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['sparse_categorical_crossentropy'])
model.fit(x_train, y_train)

y_pred = model.predict(x_test)
perf = evaluate_classification(y_test, y_pred)
print(f"accuracy {perf['accuracy']:.3f}, f1 {perf['f1']:.3f}; profile {cand_models[0]['profile']}")

quantized_model = quantize_model(model, x_train, mode='int')
open(MODEL_TFLITE, "wb").write(quantized_model)
print(f"{MODEL_TFLITE}: {get_model_size(quantized_model):.1f} kB")
