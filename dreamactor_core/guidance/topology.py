"""Joint sets and bone trees shared by every pose backend, the retargeter and the renderers.

Body joints follow OpenPose-18 order (so the first 18 are drop-in OpenPose keypoints) plus a
pelvis root and the two feet; hands use the 21-point layout shared by MediaPipe and OpenPose.
Every bone is (parent, child) and the tree is listed root-first, so rebuilding a skeleton
outward from the root is a single pass over ``BODY_BONES``.
"""

BODY_JOINTS = (
    "nose", "neck",
    "r_shoulder", "r_elbow", "r_wrist",
    "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle",
    "l_hip", "l_knee", "l_ankle",
    "r_eye", "l_eye", "r_ear", "l_ear",
    "pelvis", "r_foot", "l_foot",
)
J = {name: i for i, name in enumerate(BODY_JOINTS)}
NUM_BODY = len(BODY_JOINTS)
ROOT = J["pelvis"]

# (parent, child), ordered so that every parent appears as a child (or is the root) earlier.
BODY_BONES = (
    (J["pelvis"], J["neck"]),
    (J["pelvis"], J["r_hip"]), (J["pelvis"], J["l_hip"]),
    (J["r_hip"], J["r_knee"]), (J["r_knee"], J["r_ankle"]), (J["r_ankle"], J["r_foot"]),
    (J["l_hip"], J["l_knee"]), (J["l_knee"], J["l_ankle"]), (J["l_ankle"], J["l_foot"]),
    (J["neck"], J["r_shoulder"]), (J["r_shoulder"], J["r_elbow"]), (J["r_elbow"], J["r_wrist"]),
    (J["neck"], J["l_shoulder"]), (J["l_shoulder"], J["l_elbow"]), (J["l_elbow"], J["l_wrist"]),
    (J["neck"], J["nose"]),
    (J["nose"], J["r_eye"]), (J["r_eye"], J["r_ear"]),
    (J["nose"], J["l_eye"]), (J["l_eye"], J["l_ear"]),
)

HAND_JOINTS = 21
HAND_SIDES = ("right", "left")  # index 0 = the person's right hand
# MediaPipe / OpenPose hand tree: wrist 0, then 4 joints per finger (thumb .. little).
HAND_BONES = tuple(
    (0 if k == 0 else 1 + 4 * f + k - 1, 1 + 4 * f + k) for f in range(5) for k in range(4)
)
# Body joint each hand hangs from, indexed like HAND_SIDES.
HAND_ROOT_BODY_JOINT = (J["r_wrist"], J["l_wrist"])
