"""Model folders: the unit that leaves the tool (see ``layout``).

``write_model_folder`` writes one (``domainbed_aux.scripts.merge`` makes them from runs);
``load_model`` reads one into a ``torch.nn.Module``; ``predict`` classifies images with it;
``export`` converts its weights for timm and torchvision. Core only: nothing here imports
``domainbed_aux``.
"""

from domainbed.model_folder.config import ModelFolderError, model_config, read_config
from domainbed.model_folder.layout import (CARD_FILE, CONFIG_FILE, FILES, MERGE_FILE,
                                           MODEL_FILE)
from domainbed.model_folder.load import load_model
from domainbed.model_folder.network import ClassifierNetwork, build_network
from domainbed.model_folder.predict import Predictions, predict
from domainbed.model_folder.write import write_model_folder

__all__ = ["CARD_FILE", "CONFIG_FILE", "ClassifierNetwork", "FILES", "MERGE_FILE",
           "MODEL_FILE", "ModelFolderError", "Predictions", "build_network", "load_model",
           "model_config", "predict", "read_config", "write_model_folder"]
