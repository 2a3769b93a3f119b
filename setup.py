import pathlib

from setuptools import find_packages, setup

here = pathlib.Path(__file__).parent
requirements = [line.split("#")[0].strip()
                for line in (here / "requirements.txt").read_text().splitlines()
                if line.split("#")[0].strip()]

setup(
    name="asdn_tf",
    version="0.1.0",
    description="ASDN arbitrary-scale image super-resolution in TensorFlow / Keras 3",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["asdn_tf", "asdn_tf.*"]),
    package_data={"asdn_tf": ["weights/*.h5", "weights/*.json", "configs/*.txt"]},
    install_requires=requirements,
    entry_points={"console_scripts": ["asdn-upscale=asdn_tf.upscale_lib:run"]},
    extras_require={
        "test": ["pytest>=8", "tensorflow-serving-api==2.21.0", "nbclient>=0.10",
                 "nbformat>=5.10", "ipykernel>=6", "psutil>=5.9"],
    },
)
