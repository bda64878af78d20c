from setuptools import find_packages, setup

# The reference models live in models/ at the top of the repository (the project's layout) but install as
# ``compress_models``, a name that cannot clash with a user's own ``models`` package.
setup(
    name="compress",
    version="0.1.0",
    description="Schedule-driven pruning and quantization of recurrent networks (Distiller-compatible YAML).",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["compress", "compress.*"])
    + ["compress_models"] + [f"compress_models.{name}" for name in find_packages("models")],  # its sub-packages too
    package_dir={"compress_models": "models"},
    install_requires=["torch>=2.1", "pyyaml>=5.1", "numpy", "scipy", "tabulate"],
    extras_require={
        # hypothesis: the property-based tests (tests/test_fuzz_*.py)
        "test": ["pytest", "ruff", "optuna>=4", "onnx>=1.15", "onnxruntime>=1.18", "matplotlib", "tensorboard",
                 "hypothesis"],
        "plot": ["matplotlib"],  # sensitivity and sparsity plots; everything else works without it
        "search": ["optuna>=4"],  # the recipe search (python -m compress hyperprune); imported only when it runs
        "onnx": ["onnx>=1.15", "onnxruntime>=1.18"],  # ONNX export; ORT 1.18+ runs DynamicQuantizeLSTM on new opsets
        "tensorboard": ["tensorboard"],  # compress.distiller's TensorBoardLogger, compress.reports.TensorBoardWriter
    },
    entry_points={"console_scripts": ["compress=compress.cli:main"]},
)
