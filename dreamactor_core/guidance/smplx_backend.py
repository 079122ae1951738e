"""Optional backend: SMPL-X parameters (from 4DHumans, SMPLer-X, SMPLify-X, ...) to a PoseTrack.

Model file. The user supplies the official ``SMPLX_NEUTRAL.npz`` / ``SMPLX_MALE.npz`` /
``SMPLX_FEMALE.npz`` (from smpl-x.is.tue.mpg.de; never downloaded), by default in
``models/dreamactor/smplx/``. Only joints are computed (no skinning), so only ``v_template``
[V, 3], ``shapedirs`` [V, 3, B], ``J_regressor`` [55, V] and ``kintree_table`` [2, 55] are read,
plus ``hands_components{l,r}`` / ``hands_mean{l,r}`` when hand poses are PCA coefficients or
``flat_hand_mean`` is off. Files are read with ``np.load(allow_pickle=False)``: a ``.pkl`` model
is refused. The SMPL-X download page also offers the ``.npz`` models; if you only have the
``.pkl``, convert it once in the environment you trust it in (scipy; chumpy for old files): load
it with the ``smplx`` package's own loader, turn sparse matrices dense (``.toarray()``), and
``np.savez`` every array that is not of object dtype.

Parameter files (``load_params``): one ``.npz`` / ``.json`` with a leading frame axis T, or a
folder with one file per frame (sorted by the numbers in their names). Keys (aliases in brackets):
  global_orient [root_pose, smplx_root_pose]   [T, 3] axis-angle or [T, 3, 3] rotation matrix
  body_pose [smplx_body_pose]                  [T, 21, 3] / [T, 63] / [T, 21, 3, 3]; SMPL's 23
                                               joints (4DHumans) are accepted, the 2 hand joints dropped
  jaw_pose, leye_pose, reye_pose               [T, 3] or [T, 3, 3]
  left_hand_pose, right_hand_pose [lhand_pose, rhand_pose, smplx_lhand_pose, smplx_rhand_pose]
                                               [T, 15, 3] / [T, 45] / [T, 15, 3, 3], or [T, n < 45]
                                               PCA coefficients (needs hands_components in the model)
  betas [shape, smplx_shape] [T, B]; expression [expr, smplx_expr] [T, E]; transl [T, 3]
  cam_t [cam_trans, pred_cam_t_full]           [T, 3] camera translation, added in camera frame
  focal_length [T] or [T, 2] pixels; principal_point [princpt] [T, 2] (default: image centre)
  weak_cam [T, 3] = (s, tx, ty): pixel = centre + max(H, W) / 2 * s * (xy + (tx, ty)), on the
           full image (4DHumans' ``pred_cam`` is relative to its person crop: use
           ``pred_cam_t_full`` with ``focal_length`` instead)
  image_size (height, width), or img_size (width, height) as 4DHumans writes it
A JSON file may also be a list of per-frame objects; one level of nested objects (e.g.
``pred_smpl_params``) is flattened. Without a camera, one weak-perspective camera per track fits
the whole motion into 80% of the image. 4DHumans' joblib ``.pkl`` is refused; dump it in their
environment, e.g. (adapt the keys to your file; first tracked person per frame)::

    import joblib, numpy as np
    res = joblib.load("outputs/results/demo_video.pkl"); frames = sorted(res)
    smpl = [res[f]["smpl"][0] for f in frames]
    np.savez("params.npz", cam_t=np.stack([res[f]["camera"][0] for f in frames]),
             **{k: np.stack([s[k] for s in smpl]) for k in ("global_orient", "body_pose", "betas")})

Frames. ``up_axis="y_up"``: the model's own frame (y up, z towards the viewer; zero pose faces
the camera), converted to PoseTrack's camera frame by a 180-degree turn about x. ``"y_down"``: the
parameters already live in the OpenCV camera frame (what 4DHumans, SMPLer-X and SMPLify-X
write; an upright person has global_orient ~ 180 degrees about x). ``"auto"`` picks the one in
which the head is above the pelvis in most frames.

Mapping to PoseTrack. Neck and pelvis are the shoulder and hip midpoints (as the other
backends); eyes are SMPL-X's eyeball joints. Nose and ears are not SMPL-X joints: they are
placed from the eye midpoint and the head joint's global rotation with head_pose's canonical
face offsets, confidence ``DERIVED_CONF``. Hands: SMPL-X has 3 joints per finger (MCP, PIP,
DIP; thumb CMC, MCP, IP); the 21-point layout's fingertip is extrapolated along the last bone by
``TIP_RATIO`` times its length. head_rotation is the head joint's global rotation in head_pose's
yaw / pitch / roll; head_center / head_radius come from head_pose's canonical head sphere.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from .head_pose import BODY_HEAD_POINTS, HEAD_CENTER, HEAD_RADIUS_CM, matrix_to_euler
from .pose_track import PoseTrack
from .topology import BODY_JOINTS

DEFAULT_MODEL_FOLDER = os.path.join("models", "dreamactor", "smplx")  # relative to ComfyUI's root
MODEL_FILES = {"neutral": "SMPLX_NEUTRAL.npz", "male": "SMPLX_MALE.npz", "female": "SMPLX_FEMALE.npz"}
NUM_JOINTS = 55
# Parent of each SMPL-X joint (kintree_table[0] with the root as -1), in smplx's joint order:
# 0 pelvis, 1/2 left/right hip, 3 spine1, 4/5 knees, 6 spine2, 7/8 ankles, 9 spine3, 10/11 feet,
# 12 neck, 13/14 collars, 15 head, 16/17 shoulders, 18/19 elbows, 20/21 wrists, 22 jaw,
# 23/24 left/right eye, 25-39 left hand, 40-54 right hand (MANO order per hand: index, middle,
# pinky, ring, thumb; 3 joints each, base first).
SMPLX_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
                 20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
                 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53)
HEAD, LEFT_EYE, RIGHT_EYE = 15, 23, 24
HAND_WRIST = (21, 20)  # indexed like topology.HAND_SIDES: 0 = the person's right hand
HAND_BLOCK = (40, 25)  # first finger joint of each hand
FINGER_OFFSETS = (12, 0, 3, 9, 6)  # thumb, index, middle, ring, little within a MANO block
TIP_RATIO = 1.0
DERIVED_CONF = 0.8
_BODY_FROM_SMPLX = {
    "neck": (16, 17), "r_shoulder": (17,), "r_elbow": (19,), "r_wrist": (21,),
    "l_shoulder": (16,), "l_elbow": (18,), "l_wrist": (20,),
    "r_hip": (2,), "r_knee": (5,), "r_ankle": (8,), "l_hip": (1,), "l_knee": (4,), "l_ankle": (7,),
    "r_eye": (RIGHT_EYE,), "l_eye": (LEFT_EYE,), "pelvis": (1, 2), "r_foot": (11,), "l_foot": (10,),
}
_DERIVED = ("nose", "r_ear", "l_ear")
# Head-frame offsets (metres) from the eye midpoint, from head_pose's canonical face.
_EYE_MID_CM = (np.array(BODY_HEAD_POINTS["r_eye"]) + np.array(BODY_HEAD_POINTS["l_eye"])) / 2
_FROM_EYES = {n: (np.array(BODY_HEAD_POINTS[n]) - _EYE_MID_CM) / 100 for n in _DERIVED}
_HEAD_CENTER_FROM_EYES = (HEAD_CENTER - _EYE_MID_CM) / 100
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])  # 180 degrees about x: SMPL-X (y up, z out) <-> OpenCV frame

_ROTATION_KEYS = {"global_orient": (1,), "body_pose": (21, 23), "jaw_pose": (1,), "leye_pose": (1,),
                  "reye_pose": (1,), "left_hand_pose": (15,), "right_hand_pose": (15,)}
_VECTOR_KEYS = {"betas": None, "expression": None, "transl": 3, "cam_t": 3, "weak_cam": 3,
                "principal_point": 2}
_ALIASES = {"root_pose": "global_orient", "smplx_root_pose": "global_orient", "smplx_body_pose": "body_pose",
            "lhand_pose": "left_hand_pose", "rhand_pose": "right_hand_pose",
            "smplx_lhand_pose": "left_hand_pose", "smplx_rhand_pose": "right_hand_pose",
            "smplx_jaw_pose": "jaw_pose", "shape": "betas", "smplx_shape": "betas", "expr": "expression",
            "smplx_expr": "expression", "cam_trans": "cam_t", "pred_cam_t_full": "cam_t",
            "princpt": "principal_point"}
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


class SmplxModelNotFoundError(FileNotFoundError, ValueError):
    """The SMPL-X model file is not where it was expected."""


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues: [..., 3] axis-angle (radians) -> [..., 3, 3] rotation matrices."""
    aa = np.asarray(axis_angle, np.float64)
    theta = np.linalg.norm(aa, axis=-1, keepdims=True)  # [..., 1]
    k = aa / np.maximum(theta, 1e-12)
    zero = np.zeros_like(k[..., 0])
    skew = np.stack([np.stack([zero, -k[..., 2], k[..., 1]], -1),
                     np.stack([k[..., 2], zero, -k[..., 0]], -1),
                     np.stack([-k[..., 1], k[..., 0], zero], -1)], -2)  # [..., 3, 3]
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    return np.eye(3) + s * skew + (1 - c) * skew @ skew


def _refuse_pickle(path: str, what: str, hint: str) -> None:
    if path.lower().endswith(_PICKLE_SUFFIXES):
        raise ValueError(f"{what} {path} is a pickle, which is never loaded (unpickling runs arbitrary "
                         f"code): {hint}")


def _load_npz(path: str, what: str, hint: str) -> dict:
    _refuse_pickle(path, what, hint)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as err:  # object arrays need pickle
        raise ValueError(f"{what} {path} holds pickled objects ({err}): {hint}") from None


_MODEL_HINT = ("convert the model once to a plain .npz (script in dreamactor_core/guidance/smplx_backend.py's "
               "docstring), or use the official SMPLX_*.npz files")
_PARAMS_HINT = ("dump the parameters to .npz or .json in the environment that wrote them (for 4DHumans: "
                "the joblib script in dreamactor_core/guidance/smplx_backend.py's docstring)")


def resolve_model_path(model_path=None, models_dir=None, gender: str = "neutral") -> str:
    """The model file: ``model_path`` if it is a file, else the gender's file name inside
    ``model_path`` (a folder), ``models_dir`` or the default folder. Raises naming both."""
    if gender not in MODEL_FILES:
        raise ValueError(f"gender={gender!r}: use one of {sorted(MODEL_FILES)}")
    if model_path is not None and os.path.isfile(os.fspath(model_path)):
        path = os.fspath(model_path)
        _refuse_pickle(path, "SMPL-X model", _MODEL_HINT)
        return path
    if model_path is not None and os.path.isdir(os.fspath(model_path)):
        folder, name = os.fspath(model_path), MODEL_FILES[gender]
    elif model_path is not None:
        name = os.path.basename(os.fspath(model_path))
        folder = os.fspath(models_dir) if models_dir is not None else (
            os.path.dirname(os.fspath(model_path)) or DEFAULT_MODEL_FOLDER)
    else:
        folder = os.fspath(models_dir) if models_dir is not None else DEFAULT_MODEL_FOLDER
        name = MODEL_FILES[gender]
    candidate = os.path.join(folder, name)
    _refuse_pickle(candidate, "SMPL-X model", _MODEL_HINT)
    if os.path.isfile(candidate):
        return candidate
    raise SmplxModelNotFoundError(
        f"SMPL-X model '{name}' not found: expected the file {candidate}. Put the official SMPL-X model "
        f"files ({', '.join(MODEL_FILES.values())}, from smpl-x.is.tue.mpg.de) in the folder {folder} "
        f"(ComfyUI: {DEFAULT_MODEL_FOLDER}/), or pass the file's full path")


class SmplxModel:
    """The parts of an SMPL-X model file needed for posed joints (no mesh skinning)."""

    def __init__(self, path: str):
        data = _load_npz(path, "SMPL-X model", _MODEL_HINT)
        missing = [k for k in ("v_template", "shapedirs", "J_regressor", "kintree_table") if k not in data]
        if missing:
            raise ValueError(f"SMPL-X model {path} lacks {missing}: use the official SMPLX_*.npz layout")
        self.path = path
        v_template = data["v_template"].astype(np.float64)  # [V, 3]
        shapedirs = data["shapedirs"].astype(np.float64)
        shapedirs = shapedirs[:, :, None] if shapedirs.ndim == 2 else shapedirs  # [V, 3, B]
        j_regressor = np.asarray(data["J_regressor"], np.float64)  # [55, V]
        v = len(v_template)
        if j_regressor.shape != (NUM_JOINTS, v) or shapedirs.shape[:2] != (v, 3):
            raise ValueError(f"SMPL-X model {path}: J_regressor {j_regressor.shape} / shapedirs "
                             f"{shapedirs.shape} do not match {NUM_JOINTS} joints and {v} vertices: "
                             "not an SMPL-X model (SMPL has 24 joints, SMPL+H 52)")
        parents = np.asarray(data["kintree_table"]).astype(np.int64)[0].copy()
        parents[0] = -1  # stored as 2**32 - 1
        if tuple(parents) != SMPLX_PARENTS:
            raise ValueError(f"SMPL-X model {path}: kintree_table is not SMPL-X's 55-joint tree")
        self.parents = parents
        # The regressor is linear, so joints need only its products with the template and the
        # shape directions ([55, 3], [55, 3, B]), never a per-frame [V, 3] mesh.
        self.joint_template = j_regressor @ v_template
        self.joint_shapedirs = np.einsum("jv,vcb->jcb", j_regressor, shapedirs)
        # SMPL-X 1.1 files hold 300 shape + 100 expression directions, 1.0 files 10 + 10.
        self.num_dirs = shapedirs.shape[2]
        self.num_shape = 300 if self.num_dirs >= 400 else min(10, self.num_dirs)
        self.hands = {side: (data.get(f"hands_components{side}"), data.get(f"hands_mean{side}")) for side in "lr"}

    def rest_joints(self, betas: np.ndarray | None, expression: np.ndarray | None = None) -> np.ndarray:
        """J_rest = J_regressor @ (v_template + shapedirs . [betas, expression]): [T or 1, 55, 3]."""
        joints = self.joint_template[None]  # [1, 55, 3]
        for coeffs, start, stop in ((betas, 0, self.num_shape), (expression, self.num_shape, self.num_dirs)):
            if coeffs is None or coeffs.shape[-1] == 0:
                continue
            n = coeffs.shape[-1]
            if n > stop - start:
                raise ValueError(f"{n} {'betas' if start == 0 else 'expression'} coefficients but the model "
                                 f"{self.path} has {stop - start}: pass at most {stop - start}")
            joints = joints + np.einsum("jcb,tb->tjc", self.joint_shapedirs[:, :, start:start + n], coeffs)
        return joints

    def hand_rotations(self, pose: np.ndarray, side: str, flat_hand_mean: bool) -> np.ndarray:
        """Hand pose ([T, 15, 3, 3] matrices, [T, 15, 3] axis-angle or [T, n] PCA) -> [T, 15, 3, 3]."""
        if pose.ndim == 4:
            return pose
        components, mean = self.hands[side]
        if pose.ndim == 2:  # PCA coefficients
            if components is None:
                raise ValueError(f"{'left' if side == 'l' else 'right'}_hand_pose has {pose.shape[1]} PCA "
                                 f"coefficients but {self.path} has no hands_components{side}: give 45 "
                                 "axis-angle values per hand")
            pose = (pose @ components[:pose.shape[1]]).reshape(-1, 15, 3)
        if not flat_hand_mean and mean is not None:
            pose = pose + mean.reshape(1, 15, 3)
        return axis_angle_to_matrix(pose)

    def forward_kinematics(self, rotations: np.ndarray, rest: np.ndarray):
        """Local rotations [T, 55, 3, 3] and rest joints [T or 1, 55, 3] -> posed joints [T, 55, 3]
        and global rotations [T, 55, 3, 3], root at its rest position (no translation)."""
        t_len = rotations.shape[0]
        rest = np.broadcast_to(rest, (t_len, NUM_JOINTS, 3))
        rel = rest.copy()
        rel[:, 1:] -= rest[:, self.parents[1:]]
        glob_rot = np.empty_like(rotations)
        pos = np.empty((t_len, NUM_JOINTS, 3))
        glob_rot[:, 0], pos[:, 0] = rotations[:, 0], rest[:, 0]
        for j in range(1, NUM_JOINTS):  # parents come first
            p = self.parents[j]
            glob_rot[:, j] = glob_rot[:, p] @ rotations[:, j]
            pos[:, j] = pos[:, p] + (glob_rot[:, p] @ rel[:, j, :, None])[..., 0]
        return pos, glob_rot


def _is_rotation(a: np.ndarray) -> bool:
    eye = np.swapaxes(a, -1, -2) @ a
    return bool(np.allclose(eye, np.eye(3), atol=1e-3) and (np.linalg.det(a) > 0).all())


def _rotations(name: str, value, joints: tuple[int, ...]) -> np.ndarray:
    """A pose key -> [T, J, 3, 3] (or, for hands, [T, 15, 3] axis-angle / [T, n] PCA)."""
    a = np.asarray(value, np.float64)
    hand = name.endswith("hand_pose")
    for j in joints:
        if a.ndim >= 2 and a.shape[-2:] == (3, 3) and (j == 1 or (a.ndim >= 3 and a.shape[-3] == j)) \
                and _is_rotation(a):
            mats = a.reshape(-1, j, 3, 3)
            return mats[:, :21] if name == "body_pose" else mats
        if a.ndim >= 1 and (a.shape[-1] == 3 * j or (a.ndim >= 2 and a.shape[-2:] == (j, 3))
                            or (j == 1 and a.shape[-1] == 3)):
            aa = a.reshape(-1, j, 3)[:, :21] if name == "body_pose" else a.reshape(-1, j, 3)
            return aa if hand else axis_angle_to_matrix(aa)
    if hand and a.ndim >= 1 and 0 < a.shape[-1] < 45:
        return a.reshape(-1, a.shape[-1])
    shapes = " or ".join(f"[T, {j}, 3] / [T, {3 * j}] / [T, {j}, 3, 3]" for j in joints)
    raise ValueError(f"SMPL-X parameter '{name}' has shape {a.shape}: expected {shapes}"
                     + (", or [T, n < 45] PCA coefficients" if hand else ""))


def normalize_params(raw: dict) -> dict:
    """Parameter dict with any accepted key names and shapes (module docstring) -> canonical dict:
    pose keys [T, J, 3, 3] (hand poses may stay axis-angle / PCA), vectors [T, D], focal_length
    [T, 2], image_size (height, width); frame counts of 1 are broadcast to T."""
    flat = {}
    for key, value in raw.items():
        flat.update({k: v for k, v in value.items()} if isinstance(value, dict) else {key: value})
    out, unknown = {}, []
    for key, value in flat.items():
        name = _ALIASES.get(key, key)
        if name in _ROTATION_KEYS:
            out[name] = _rotations(name, value, _ROTATION_KEYS[name])
        elif name in _VECTOR_KEYS:
            a = np.asarray(value, np.float64)
            width = _VECTOR_KEYS[name] or (a.shape[-1] if a.ndim else 1)
            if a.size % width or (_VECTOR_KEYS[name] and a.shape[-1:] != (width,)):
                raise ValueError(f"SMPL-X parameter '{key}' has shape {a.shape}: expected [T, {width}]")
            out[name] = a.reshape(-1, width)
        elif name in ("focal_length", "image_size", "img_size"):
            out[name] = np.asarray(value, np.float64)
        else:
            unknown.append(key)
    if not any(k in out for k in _ROTATION_KEYS):
        raise ValueError(f"SMPL-X parameters have none of the pose keys {sorted(_ROTATION_KEYS)} "
                         f"(got {sorted(flat)}): give at least global_orient or body_pose")
    t_len = max(len(v) for k, v in out.items() if k in _ROTATION_KEYS or k in _VECTOR_KEYS)
    if "focal_length" in out:
        f = out["focal_length"]  # scalar, [T] (fx = fy), [2] in a one-frame file, or [T, 2]
        if f.ndim <= 1:
            f = f.reshape(1, 2) if f.shape == (2,) and t_len != 2 else f.reshape(-1, 1)
        out["focal_length"] = np.broadcast_to(f, (len(f), 2)).copy() if f.shape[-1] == 1 else f.reshape(-1, 2)
    if "img_size" in out:  # 4DHumans: (width, height)
        out.setdefault("image_size", out.pop("img_size").reshape(-1, 2)[0, ::-1])
    if "image_size" in out:
        out["image_size"] = tuple(int(round(x)) for x in np.asarray(out["image_size"]).reshape(-1, 2)[0])
    for key, value in out.items():
        if key == "image_size":
            continue
        if len(value) not in (1, t_len):
            raise ValueError(f"SMPL-X parameter '{key}' has {len(value)} frames but others have {t_len}: "
                             "give every per-frame key the same leading frame count (or 1)")
        if len(value) == 1 and t_len > 1:
            out[key] = np.repeat(value, t_len, axis=0)
    out["num_frames"] = t_len
    if unknown:
        out["ignored_keys"] = sorted(unknown)
    return out


def _frame_number(name: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _read_param_file(path: str) -> dict:
    _refuse_pickle(path, "SMPL-X parameter file", _PARAMS_HINT)
    if path.lower().endswith(".npz"):
        return normalize_params(_load_npz(path, "SMPL-X parameter file", _PARAMS_HINT))
    if path.lower().endswith(".json"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, list):
            return _concat([normalize_params(d) for d in data], path)
        return normalize_params(data)
    raise ValueError(f"SMPL-X parameter file {path}: use .npz or .json")


def _concat(parts: list[dict], where: str) -> dict:
    if not parts:
        raise ValueError(f"{where} holds no frames")
    keys = set(parts[0]) - {"num_frames", "image_size", "ignored_keys"}
    out = dict(parts[0])
    for i, part in enumerate(parts[1:], 1):
        if set(part) - {"num_frames", "image_size", "ignored_keys"} != keys:
            raise ValueError(f"{where}: frame file {i} has keys {sorted(part)} but the first has {sorted(keys)}")
    for key in keys:
        out[key] = np.concatenate([p[key] for p in parts], axis=0)
    out["num_frames"] = sum(p["num_frames"] for p in parts)
    return out


def load_params(path_or_folder) -> dict:
    """SMPL-X parameters from one .npz / .json file or a folder of per-frame files (canonical
    dict, see ``normalize_params``)."""
    path = os.fspath(path_or_folder)
    if os.path.isdir(path):
        names = sorted((n for n in os.listdir(path) if n.lower().endswith((".npz", ".json"))), key=_frame_number)
        if not names:
            pickles = [n for n in os.listdir(path) if n.lower().endswith(_PICKLE_SUFFIXES)]
            raise ValueError(f"no .npz or .json parameter files in {path}"
                             + (f" (found pickles {pickles[:3]}: {_PARAMS_HINT})" if pickles else ""))
        return _concat([_read_param_file(os.path.join(path, n)) for n in names], path)
    if not os.path.isfile(path):
        raise ValueError(f"SMPL-X parameter file {path} does not exist: give a .npz / .json file or a folder")
    return _read_param_file(path)


class SmplxPoseSource:
    """SMPL-X parameters -> PoseTrack through the user's SMPL-X model file (module docstring).

    ``flat_hand_mean``: False (smplx's default) adds the model's mean hand pose to axis-angle
    and PCA hand poses; rotation-matrix hand poses are always taken as they are.
    """

    def __init__(self, model_path=None, models_dir=None, gender: str = "neutral", up_axis: str = "auto",
                 flat_hand_mean: bool = False):
        if up_axis not in ("auto", "y_up", "y_down"):
            raise ValueError(f"up_axis={up_axis!r}: use 'auto', 'y_up' (SMPL-X's own frame) or 'y_down' "
                             "(camera frame, as 4DHumans / SMPLer-X write)")
        self.model = SmplxModel(resolve_model_path(model_path, models_dir, gender))
        self.up_axis = up_axis
        self.flat_hand_mean = flat_hand_mean

    def joints(self, params: dict):
        """Posed joints in the model's frame [T, 55, 3] (with transl) and global rotations [T, 55, 3, 3]."""
        p = params if "num_frames" in params else normalize_params(params)
        t_len = p["num_frames"]
        rot = np.broadcast_to(np.eye(3), (t_len, NUM_JOINTS, 3, 3)).copy()
        for key, start in (("global_orient", 0), ("body_pose", 1), ("jaw_pose", 22), ("leye_pose", 23),
                           ("reye_pose", 24)):
            if key in p:
                rot[:, start:start + p[key].shape[1]] = p[key]
        for key, side, start in (("left_hand_pose", "l", 25), ("right_hand_pose", "r", 40)):
            if key in p:
                rot[:, start:start + 15] = self.model.hand_rotations(p[key], side, self.flat_hand_mean)
        rest = self.model.rest_joints(p.get("betas"), p.get("expression"))
        pos, glob = self.model.forward_kinematics(rot, rest)
        return pos + p.get("transl", np.zeros((1, 3)))[:, None], glob

    def track(self, params, image_size=None, fps: float = 25.0) -> PoseTrack:
        """params: a path (file / folder) or a dict; image_size (height, width), else the params'."""
        p = load_params(params) if isinstance(params, (str, os.PathLike)) else (
            params if "num_frames" in params else normalize_params(params))
        size = image_size if image_size is not None else p.get("image_size")
        if size is None:
            raise ValueError("image_size is unknown: pass image_size=(height, width) or put image_size "
                             "in the parameter file")
        h, w = (int(s) for s in size)
        model_joints, glob = self.joints(p)
        up = self.up_axis
        if up == "auto":
            rise = model_joints[:, HEAD, 1] - model_joints[:, 0, 1]
            up = "y_up" if np.median(rise) > 0 else "y_down"
        flip = _FLIP_YZ if up == "y_up" else np.eye(3)
        cam = model_joints @ flip + p.get("cam_t", np.zeros((1, 3)))[:, None]  # [T, 55, 3] OpenCV frame
        head_rot = flip @ glob[:, HEAD] @ _FLIP_YZ  # head frame -> camera frame
        eyes = (cam[:, LEFT_EYE] + cam[:, RIGHT_EYE]) / 2  # [T, 3]

        body = np.zeros((len(cam), len(BODY_JOINTS), 3))
        conf = np.ones((len(cam), len(BODY_JOINTS)), np.float32)
        for i, name in enumerate(BODY_JOINTS):
            if name in _DERIVED:
                body[:, i] = eyes + head_rot @ _FROM_EYES[name]
                conf[:, i] = DERIVED_CONF
            else:
                body[:, i] = cam[:, list(_BODY_FROM_SMPLX[name])].mean(1)
        hands = np.zeros((len(cam), 2, 21, 3))
        for side in range(2):
            hands[:, side, 0] = cam[:, HAND_WRIST[side]]
            for f, off in enumerate(FINGER_OFFSETS):
                chain = cam[:, HAND_BLOCK[side] + off:HAND_BLOCK[side] + off + 3]  # [T, 3, 3]
                hands[:, side, 1 + 4 * f:4 + 4 * f] = chain
                hands[:, side, 4 + 4 * f] = chain[:, 2] + TIP_RATIO * (chain[:, 2] - chain[:, 1])
        centre3d = eyes + head_rot @ _HEAD_CENTER_FROM_EYES

        project, camera = _camera(p, (h, w), np.concatenate([body, hands.reshape(len(cam), -1, 3)], 1))
        track = PoseTrack.empty(len(cam), (h, w), fps, source="smplx")
        pelvis = body[:, BODY_JOINTS.index("pelvis")][:, None]
        track.body_3d[:] = body - pelvis
        track.hands_3d[:] = hands - pelvis[:, None]
        track.body_2d[:], _ = project(body)
        track.hands_2d[:] = project(hands.reshape(len(cam), -1, 3))[0].reshape(len(cam), 2, 21, 2)
        track.body_conf[:], track.hands_conf[:] = conf, 1.0
        centre2d, px_per_metre = project(centre3d[:, None])
        track.head_center = centre2d[:, 0].astype(np.float32)
        track.head_radius = (px_per_metre[:, 0] * HEAD_RADIUS_CM / 100).astype(np.float32)
        track.head_rotation = matrix_to_euler(head_rot).astype(np.float32)
        track.head_conf = np.ones(len(cam), np.float32)
        track.report.update(up_axis=up, camera=camera, derived_joints=list(_DERIVED),
                            ignored_keys=p.get("ignored_keys", []))
        return track.validate()


def _camera(p: dict, size: tuple[int, int], points: np.ndarray):
    """A projection (camera-frame points [T, K, 3] -> pixels [T, K, 2], pixels per metre [T, K])
    from the parameters' camera, else one weak-perspective fit of ``points`` to the image."""
    h, w = size
    if "focal_length" in p:
        f = p["focal_length"][:, None]  # [T, 1, 2]
        c = p.get("principal_point", np.array([[w / 2, h / 2]]))[:, None]
        if (points[..., 2] <= 1e-6).any():
            bad = np.flatnonzero((points[..., 2] <= 1e-6).any(1))
            raise ValueError(f"SMPL-X joints lie at or behind the camera (z <= 0) in frames {bad[:5].tolist()}: "
                             "give cam_t / transl that place the body in front of the camera, check up_axis, "
                             "or drop focal_length to use a weak-perspective fit")

        def perspective(x):
            return f * x[..., :2] / x[..., 2:] + c, f[..., 0] / x[..., 2]
        return perspective, "perspective"
    if "weak_cam" in p:
        s, t = p["weak_cam"][:, None, :1], p["weak_cam"][:, None, 1:]
        half = max(h, w) / 2

        def weak(x):
            pixels = np.array([w / 2, h / 2]) + half * s * (x[..., :2] + t)
            return pixels, np.broadcast_to(half * s[..., 0], x.shape[:2])
        return weak, "weak_cam"
    lo, hi = points[..., :2].reshape(-1, 2).min(0), points[..., :2].reshape(-1, 2).max(0)
    scale = 0.8 * min(w / max(hi[0] - lo[0], 1e-6), h / max(hi[1] - lo[1], 1e-6))
    mid = (lo + hi) / 2

    def fitted(x):
        return (x[..., :2] - mid) * scale + np.array([w / 2, h / 2]), np.full(x.shape[:2], scale)
    return fitted, "weak-perspective fit to the image"
