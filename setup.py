from setuptools import find_packages, setup

setup(
    name="domainbed-ratatouille",
    version="0.1.0",
    description="DomainBed with model ratatouille: recycling auxiliary fine-tunings for "
                "out-of-distribution generalisation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["domainbed", "domainbed.*", "domainbed_aux", "domainbed_aux.*"]),
    package_data={"": ["*.json"], "domainbed.datasets.download": ["data/*.txt"]},
    install_requires=[
        "torch",
        "torchvision",
        "numpy",
        "Pillow",
        "submitit>=1.5",
        "tqdm",
        "safetensors",
        "orjson",  # collect_results decodes records 3x faster (docs/collect_results.md)
    ],
    extras_require={
        "test": ["pytest>=7", "matplotlib", "timm"],  # the plot and timm tests run in CI too
        "plots": ["matplotlib"],
        "timm": ["timm"],
        "wilds": ["wilds"],
    },
    entry_points={
        # the core finds extensions here and never imports them by name
        "domainbed.plugins": ["aux = domainbed_aux.plugin"],
        # the torch-free part: sweep options and hooks for listing jobs and reading records
        "domainbed.sweep_plugins": ["aux = domainbed_aux.hooks"],
        # the modules a recipe's report stage may run (a recipe file names no other code)
        "domainbed.report_providers": ["ratatouille = domainbed_aux.scripts.report"],
    },
)
