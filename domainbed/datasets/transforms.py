"""Image transforms for the 224x224 datasets: the eval transform and the train augmentation.

torchvision is imported inside the functions: importing it costs seconds, and modules that
only register datasets should not pay for it.
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224


def eval_transform(size: int = IMAGE_SIZE):
    """Resize to ``size`` x ``size``, to tensor, ImageNet normalisation; deterministic."""
    from torchvision import transforms
    return transforms.Compose([
        transforms.Resize((size, size)),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def train_transform(size: int = IMAGE_SIZE):
    """The training augmentation: random resized crop, flip, colour jitter, grayscale."""
    from torchvision import transforms
    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.7, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(0.3, 0.3, 0.3, 0.3),
        transforms.RandomGrayscale(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def image_transform(augment: bool, size: int = IMAGE_SIZE):
    """``train_transform`` when ``augment`` else ``eval_transform``."""
    return train_transform(size) if augment else eval_transform(size)
