"""DomainBed core: datasets, networks, algorithms, training, sweeps and model selection.

Importing the package is cheap: sub-modules are imported on use. ``load_model(path)`` and
``predict(model, images)`` use a saved model folder (see ``domainbed.model_folder``).
"""

__version__ = "0.1.0"


def load_model(path, device=None):
    """The network of a model folder, in eval mode, with ``transform`` and ``class_names``
    (see ``domainbed.model_folder.load_model``)."""
    from domainbed.model_folder.load import load_model as _load_model
    return _load_model(path, device)


def predict(model, images, batch_size=64, num_workers=0, progress=False):
    """Predictions of a loaded model on image files, folders, PIL images or tensors (see
    ``domainbed.model_folder.predict``)."""
    from domainbed.model_folder.predict import predict as _predict
    return _predict(model, images, batch_size, num_workers, progress)
