"""Packaging for mvpretrain: multi-view pretraining of IBRNet and JDACS/MVSNet on MVImgNet."""

from setuptools import find_packages, setup

setup(
    name="mvpretrain",
    version="0.1.0",
    description="Generalizable NeRF (IBRNet) and self-supervised MVS (JDACS) pretraining on MVImgNet",
    python_requires=">=3.10",
    packages=find_packages(include=["multiview*", "ibrnet*", "jdacs*"]),
    package_data={"multiview": ["data/lists/*.txt"], "ibrnet": ["*.c"]},  # C kernels are compiled at first use
    scripts=[],
    install_requires=[
        "torch>=2.4",  # models, geometry, autocast, scaled_dot_product_attention
        "torchvision",  # ImageNet backbones for LPIPS and the JDACS VGG19
        "numpy",  # file formats and camera conversions
        "imageio",  # PNG/JPEG reading and writing
        "imageio-ffmpeg",  # mp4 videos of rendered camera paths
        "scikit-image",  # reference SSIM used to check ours
        "kornia",  # image filters and SSIM building blocks
        "lpips",  # LPIPS metric (v0.1 linear heads)
        "configargparse",  # config-file + CLI options
        "pycolmap",  # COLMAP sparse models (MVImgNet, LLFF)
        "tqdm",  # progress bars
        "tensorboard",  # training logs
        "matplotlib",  # plots of the studies
    ],
    extras_require={"dev": ["pytest", "pytest-xdist", "ruff"]},
)
