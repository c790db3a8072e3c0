"""imgcls-desktop: train image classifiers from class folders, on a laptop CPU."""

__version__ = "0.1.0"
APP_NAME = "imgcls"
