"""Seed 000's idea 1-3 snippets run against the library as written, adapted only to random-init weights
(pretrained=None: no weights can be downloaded here), and their features feed the ridge FeatureEncoder."""

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data

from tbdencoder.data import ScreenGeometry, extract_dva_crop
from tbdencoder.evaluate.metrics import pearson_r
from tbdencoder.models import FeatureEncoder


@pytest.fixture(scope="module")
def clip_model():
    torch.manual_seed(0)
    # Idea 1, as written but for the weights: 'ViT-L-14', pretrained='openai' -> random init
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-L-14", pretrained=None)
    model.eval()
    return model, preprocess


def test_idea1_clip_features_and_idea2_multilayer_and_idea3_dual_crops(clip_model):
    model, preprocess = clip_model
    photos = [Image.fromarray(skimage_data.astronaut()), Image.fromarray(skimage_data.chelsea())]

    # Idea 1
    def extract_clip_features(pil_images):
        x = torch.stack([preprocess(img) for img in pil_images])
        with torch.no_grad():
            return model.encode_image(x).numpy()  # (N, 768)

    assert extract_clip_features(photos).shape == (2, 768)

    # Idea 2
    hooks, features = {}, {}

    def make_hook(name):
        def fn(m, inp, out):
            features[name] = out.detach()
        return fn

    for i, block in enumerate(model.visual.transformer.resblocks):
        if i in [3, 7, 11]:
            hooks[i] = block.register_forward_hook(make_hook(f"layer_{i}"))
    extract_clip_features(photos)
    feat = torch.cat([features[k][:, 0, :] for k in sorted(features)], dim=-1)
    assert feat.shape == (2, 3 * 1024)
    for hook in hooks.values():
        hook.remove()

    # Idea 3: `from tbdencoder.data import extract_dva_crop`, crops of a PIL scene fed to the preprocessing
    def backbone(x):
        with torch.no_grad():
            return model.encode_image(x)

    def dual_crop_features(img, fix_xy, next_fix_xy, dva=2.0):
        foveal = extract_dva_crop(img, fix_xy, dva)
        parafoveal = extract_dva_crop(img, next_fix_xy, dva)
        f1 = backbone(preprocess(foveal).unsqueeze(0))
        f2 = backbone(preprocess(parafoveal).unsqueeze(0))
        return torch.cat([f1, f2], dim=-1)  # 2x feature dim

    scene = photos[0]  # 512 x 512, shown centred on the default 1024 x 768 screen
    assert dual_crop_features(scene, (500, 380), (560, 400)).shape == (1, 2 * 768)
    foveal = extract_dva_crop(scene, (512, 384), 2.0)
    side = round(ScreenGeometry().dva_to_px(2.0))
    assert isinstance(foveal, Image.Image) and foveal.size == (side, side)
    # the crop centred on the screen centre is the middle of the scene
    np.testing.assert_array_equal(np.asarray(foveal), np.asarray(scene)[256 - side // 2:256 - side // 2 + side,
                                                                         256 - side // 2:256 - side // 2 + side])


def test_feature_encoder_takes_numpy_arrays():
    """"Feed output into existing FeatureEncoder ridge pipeline": fit / predict on arrays, scored by r."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 64)).astype(np.float32)
    Y = X @ rng.standard_normal((64, 20)) + 2.0 * rng.standard_normal((300, 20))
    encoder = FeatureEncoder(alphas=np.logspace(-1, 4, 6), device="cpu").fit(X[:200], Y[:200])
    r = pearson_r(encoder.predict(X[200:]), Y[200:])
    assert r.shape == (20,) and r.mean() > 0.8
