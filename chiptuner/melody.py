"""Melody: picked from a song, simplified to what a person plays, mapped to five buttons.

A thin wrapper over ``_kernels.melody``.

How ``melody_notes`` picks the melody (``_kernels.melody.pick_melody``, one kernel call)
-----------------------------------------------------------------------------------------
1. Drums are dropped; the other notes go onto the 16th grid.
2. Track choice: each (track, channel) group is scored by its note count, cut hard for
   notes that start on the same step or under a sounding note of the group. Where the best
   group is monophonic (at most ``_MONO_LIMIT`` of such notes) and there are two groups or
   more, its notes are the melody; in a segment of ``_SEGMENT_STEP`` steps where it is
   silent, the best other monophonic group that plays there stands in. Track names,
   programs and velocities are not used (names are often wrong in real files).
3. Otherwise (one merged track, or only chordal tracks) every pitched note is a candidate.
   When the velocities are flat (standard deviation at most ``_FLAT_VELOCITY``) and the
   candidates' skyline (highest onset per step) moves smoothly, at most ``_CLEAN_LEAP``
   semitones per note on average, the input is a clean top line over an accompaniment
   (folk tune with chords, chorale) and the skyline is the melody.
4. Else each note gets 31 features from the notes alone (``_kernels.melody.FEATURE_NAMES``:
   height in its onset group and among the sounding notes, duration, onsets under it,
   register against the local upper line and the song, intervals to the neighbouring
   onsets, velocity against its onset group, its neighbours and the song, beat position).
   A small network (``_NET1``: 16 ReLU units) turns them into a melody probability; 22
   context features then say how the note fits the probable melody around it (its
   pitch and velocity against the likely line near and wide, the likely notes before,
   after and still sounding; ``CONTEXT_NAMES``), and a second network (``_NET2``) scores
   the note on all 53. Both were fitted on POP909 001-300 with bench/fit_melody.py. A
   causal greedy line takes per onset step the best-scored note if its score is positive.
5. Chosen notes that overlap the next chosen note are cut at its onset.
"""

from __future__ import annotations

import logging
from typing import Literal, get_args

import numpy as np

from chiptuner._kernels import melody as _k
from chiptuner.errors import ParameterError
from chiptuner.timebase import STEPS_PER_BEAT, quantize_notes
from chiptuner.types import Melody, Notes, Score

__all__ = [
    "melody_notes",
    "skyline_notes",
    "extract_melody",
    "melody_from_notes",
    "simplify",
    "to_buttons",
    "MaxOnsets",
    "N_LANES",
]

logger = logging.getLogger(__name__)

MaxOnsets = Literal["beat", "half_beat"]

#: Number of button lanes of ``to_buttons``.
N_LANES = 5

#: The two note networks of ``_kernels.melody.pick_melody`` (hidden weights, one
#: row per unit; hidden biases, output weights, output bias), fitted on POP909 001-300 only.
# fitted by bench/fit_melody.py --write on POP909 001-300; do not edit by hand
_NET1 = (
    np.array([
        0, 0.23068, -0.057848, -0.1368, -0.20629, 0.40001, -0.75329, 0.18447,
        0.4811, -0.068006, 0.092784, 0.10649, -0.44879, 0.082171, -0.14258, 3.9816,
        -0.24264, -0.075517, 0.26833, -0.093895, -0.12834, -0.43101, -0.13193, -0.10305,
        -0.10257, -0.10056, -0.12366, -0.072102, -0.045315, 0.16159, -0.17439, 0,
        -0.88621, 0.28051, -0.55831, 0.070013, 0.20107, -0.26081, -0.20489, -0.38331,
        -0.40729, 0.064357, 0.68636, 0.65122, 0.12341, 3.3622, -0.17259, 0.14457,
        0.065788, 0.22695, -0.29803, -0.19476, -0.2376, -0.51801, -0.1408, 0.23422,
        0.18372, -0.22658, 0.3416, 1.4398, 0.018174, 0.2459, 0, -0.5951,
        -1.1134, -0.73912, 0.60897, -0.12906, 0.49124, 0.11358, 0.38994, 0.18925,
        -0.1337, -0.23699, -0.62278, 0.37795, 0.21314, 0.30428, 0.18143, 0.18175,
        -0.16525, -0.37066, -1.0104, -0.17658, -0.90759, 0.23082, -0.16566, -0.34868,
        0.12642, 0.38395, -0.64336, -0.079126, -0.61386, 0, 0.56833, 0.2149,
        -0.58337, -0.34375, -0.040258, -3.1204, -0.13315, -0.56099, 0.66164, -0.0009386,
        0.017998, -0.26174, -0.45272, -0.21862, -1.4229, 0.022948, 0.055046, 0.11095,
        -0.051443, 0.46517, -0.38046, -0.52892, 0.13871, -0.089061, -0.11546, 0.42847,
        0.0107, -1.1503, 0.12303, -0.11888, 0, 0.75203, 0.62775, 0.59908,
        -0.10071, 0.28225, -0.11046, -0.5526, -0.58712, -0.37667, 0.13197, -0.057101,
        -0.85053, 0.64293, 0.38728, 0.68896, -0.41852, 0.10217, -0.29493, -0.3945,
        -0.19097, 0.48879, -0.2915, 0.09533, 0.14689, 0.76987, -0.10773, 0.066893,
        -1.3831, -0.060302, 0.66276, 0, 0.52525, -0.17408, -0.12034, -0.24323,
        -0.26844, 1.4638, 0.1728, -0.22749, 0.017308, -0.28745, 0.44793, 0.011241,
        -0.40174, 1.3989, 0.8084, -0.60242, 0.15536, 0.06578, 0.72708, 1.3561,
        -1.2011, 0.26235, 0.038192, -0.05713, -0.30854, -0.19069, -0.47004, -1.4183,
        -0.66118, 0.27057, 0, -1.2648, -0.50978, -0.58527, 0.51327, -1.3325,
        0.093725, -0.3566, -0.8259, -0.073603, -0.12939, 0.59424, -0.18916, -0.61444,
        -0.26195, -0.49254, -0.20233, -0.24352, -0.18731, -0.013706, -0.00051714, 0.1666,
        -0.35293, -0.33863, -0.22549, -0.78431, 0.24949, -0.018818, -1.4522, -0.11124,
        -1.1538, 0, -0.44151, 0.064445, -0.43384, 0.036858, 0.46064, -1.5325,
        0.1554, 0.32442, 0.58461, -0.0011132, 0.11414, -0.16867, 0.080073, -1.1062,
        -2.2982, 0.30898, 0.077886, -0.158, -0.16294, -0.68707, -0.15433, -0.23615,
        -0.20861, 0.016727, -0.28367, -0.46745, -0.13114, -0.17131, 0.30281, -0.11436,
        0, -0.43493, 0.37621, 0.51393, -0.17826, -0.31172, -0.41996, -0.065019,
        0.070904, -0.1103, 0.04184, 0.72126, 0.39842, -0.5743, 1.0009, 0.43917,
        1.1369, -0.038228, -1.1125, -0.7461, -0.49052, 0.25412, 0.053504, -0.06705,
        0.17653, -0.011222, -0.22609, 0.044699, 3.3175, -0.31219, 1.1076, 0,
        0.14655, -0.77944, 0.51945, -0.44894, -0.95036, -0.50479, -0.18098, -0.41883,
        0.076366, 0.025465, -0.034676, 0.19978, -0.14246, 0.33968, -0.36082, 1.4031,
        -0.01221, 0.1275, -0.11168, -0.35693, -0.40542, 0.80759, -0.076194, 0.17764,
        -0.47126, 0.077408, 0.15219, -1.4404, -0.24062, -0.082093, 0, -1.0655,
        -0.63583, 0.70597, -0.80182, -0.19413, 0.018135, 0.25622, 0.41346, 0.19997,
        -0.08714, -0.037943, 0.7709, 0.2616, 0.07906, 0.091573, -0.17081, -0.014082,
        -0.17071, -0.28141, -0.49956, 0.048878, 0.74543, -0.04343, -0.029174, -0.52766,
        0.16345, 0.10757, -0.10695, 0.036738, 0.13336, 0, -0.27353, -0.27096,
        -0.16049, -0.43496, -0.0047627, -1.3107, 0.28083, 0.54768, -0.26944, 0.026839,
        -0.44058, 0.095348, 0.19011, -0.73204, -0.51518, -0.96499, -0.5011, 0.73872,
        0.59707, -0.43289, -0.42341, 0.54801, 0.031516, -0.085752, -0.16092, -0.2558,
        -0.3374, 0.60841, 0.24913, -0.36448, 0, -0.47851, -0.25292, 0.41706,
        -0.91675, -0.30469, -2.9436, 0.17875, -0.30856, 0.13809, -0.040748, 0.18101,
        0.39793, -0.17425, 0.1261, -0.042314, -0.1233, -0.034905, 0.25096, 0.038106,
        -0.2248, -0.28924, 0.87757, -0.064137, 0.033014, -0.57734, 0.012906, 0.049601,
        0.71128, 0.061163, -0.17267, 0, -0.57641, -0.048179, 0.42818, -0.41441,
        0.014662, 0.60335, -0.20793, -0.42323, -0.045588, -0.14135, 0.34767, 0.11102,
        -0.33576, 0.38634, 0.54265, 0.26012, 0.074889, 0.7167, 0.54799, 0.090638,
        -1.0698, 0.31976, 0.088636, -0.27265, -0.69764, -0.0010735, 0.08927, 1.9583,
        0.62175, 0.79102, 0, -0.88253, -0.60341, 0.32889, -0.25983, -0.50014,
        0.067641, 0.41141, -0.21989, -0.1337, 0.10838, -0.17879, 0.47861, 0.31451,
        0.21749, 0.23226, 0.28935, 0.0053755, 0.093655, 0.96501, 0.84848, 1.0759,
        0.50132, 0.18216, 0.31792, 0.23432, -0.28315, -0.13392, -1.1353, 0.15219,
        -0.28427, 0, -0.23215, -0.29168, -0.16745, 0.12479, -3.1197, -1.2064,
        0.027684, 0.41569, 0.064079, -0.044687, -0.62312, 0.29753, 0.68295, -0.071221,
        0.32615, 0.62, -0.030544, -0.21275, 0.18102, -0.3233, -0.6991, -0.16172,
        -0.10841, 0.17972, 0.30878, -0.0070486, 0.10945, 1.757, 0.038163, -0.076681,
    ]).reshape(16, 31),
    np.array([
        -1.4002, -1.8326, 0.56144, 1.8743, 0.47165, 1.3289, 3.5864, 2.0616,
        -5.7491, -0.030394, 1.4814, 4.4197, 1.5711, -1.692, 1.2161, -1.0374,
    ]),
    np.array([
        0.93006, 0.81304, 1.0079, 0.6388, -1.1445, -0.74774, 0.95062, 0.49562,
        -0.70542, -0.83095, -2.1125, 0.62233, -2.2818, -1.3737, 0.59409, 0.7529,
    ]),
    -0.80769,
)  # fmt: skip
_NET2 = (
    np.array([
        0, 0.46044, 0.27213, -0.33982, 0.050728, 0.021688, -0.49096, -0.091974,
        -0.27277, 0.28126, -0.073738, -0.035826, 0.14648, 0.56416, 0.28281, 0.20403,
        0.3888, 0.090837, -0.26252, -0.5007, -0.32253, -0.48437, -0.31251, -0.1262,
        -0.040406, 0.55735, -0.068546, 0.049866, -1.2401, 0.0044815, -0.45516, 1.3767,
        -0.75152, -0.27717, -0.1385, 0.11683, -0.34021, 0.1278, -0.46498, -0.13999,
        -0.23676, 0.018054, -0.024648, -0.53982, 0.22451, 0.0033883, 0.65814, 0.050624,
        -0.13928, -0.72266, 0.30136, -0.16558, 0.20252, 0, 0.28326, 0.00050696,
        -0.25916, 0.17549, -0.16103, -1.2177, -0.23628, 0.23976, 0.028078, 0.078378,
        -0.57238, 0.40943, 0.67792, 0.39334, 0.53656, 0.059893, -0.078419, -0.12036,
        0.18779, -0.67062, 0.22713, -0.21595, 0.027254, 0.12636, 0.64815, 0.10968,
        -0.056154, -0.15605, -0.65, 0.14968, -0.68534, -0.23531, -0.28255, -0.2293,
        0.091184, 0.43432, -0.24986, 0.17364, -0.23478, 0.3283, -1.5006, 0.12919,
        -0.41873, 0.032451, 0.04465, 0.032789, 0.42857, 0.44278, -0.15625, -9.085,
        -0.082459, -0.3296, 0, -0.4388, -0.46459, -0.21238, 0.237, 0.73677,
        -0.56648, -0.44809, 0.11443, 0.30158, -0.07684, -0.45231, 0.41335, 0.045385,
        0.37605, -0.47646, -0.77368, 0.099989, -0.078161, -0.23013, 0.25358, 0.20221,
        -0.31349, 0.092775, 0.28564, -0.35864, 0.082398, -0.0636, -2.3488, 0.21115,
        0.39261, 1.0088, 0.51681, 0.38008, 0.12745, -0.10176, 0.18067, -0.46729,
        -0.18312, -0.24254, 0.15093, 0.2425, -0.69476, -0.099933, -0.060647, 0.097624,
        -0.47905, 0.76566, 0.49764, 1.7214, -7.2803, -0.53275, -0.31769, 0,
        -0.42293, -0.0044357, -0.34192, 0.24374, 0.04251, 0.13939, 0.0086485, 0.087075,
        0.13714, 0.059273, 0.32341, 0.31246, 0.26724, 0.23406, -2.3837, -0.023744,
        -0.20901, 0.043933, -0.23221, -0.31081, -0.014883, -0.33994, -0.073008, 0.065366,
        0.080619, -0.016964, -0.11219, 0.0023914, -0.3331, -0.058609, -0.47954, -0.19359,
        -0.4776, -0.13999, 0.159, -0.45066, -0.94065, 1.1474, 0.19893, -0.42182,
        0.18318, 0.042281, -0.19255, -0.092977, -0.057683, 0.022576, -0.077215, 0.26378,
        -0.97644, 0.55447, -0.017738, 0.038525, 0, 0.20254, 0.30885, 0.46359,
        -0.3197, -0.40051, -0.4521, 0.43878, 0.30709, 0.39199, -0.10349, -0.29307,
        -0.86622, 0.16778, 0.72929, 0.10664, -0.40971, -0.041091, -0.093892, -0.0026529,
        -0.22482, 0.049055, 0.36234, 0.097602, 0.0089412, 0.19893, 0.00069198, 0.043538,
        -1.8311, -0.14768, -0.79074, -1.2577, 0.26513, -0.22455, 0.18223, -0.18115,
        0.70945, -0.093098, -0.27771, -0.0013956, 0.47336, 0.9243, -0.010195, -0.22649,
        -0.064341, -0.30048, -0.28609, 0.24468, 1.1573, 0.033624, -0.7569, 0.38957,
        -0.63161, 0, 0.42337, -0.14307, 0.075153, -0.057811, 0.024233, 0.010135,
        0.26382, 0.0040994, -0.14531, 0.061776, 0.29764, 0.28933, -0.18143, 0.58774,
        -0.25905, 0.13274, -0.25825, 0.57422, 0.21389, 0.55873, 0.31096, 0.1749,
        0.054343, 0.097871, 0.29261, -0.090198, -0.13473, -0.12762, 0.49922, -0.20787,
        -1.9351, 0.8799, 0.20289, -0.17, -0.16313, 0.010716, -0.21449, -0.015936,
        -0.27074, -0.074278, 0.15878, 0.14811, -0.23023, 0.05478, -0.18798, 0.59114,
        0.071615, -0.03847, -0.20388, -0.17272, 0.088705, 0.40916, 0, -0.12476,
        -1.0478, 0.59538, -0.67942, -0.12999, 0.040713, 0.11182, 0.83858, 0.23223,
        -0.031943, -0.16502, 0.64849, 0.17316, 0.15312, -0.56514, 0.18327, -0.070225,
        -0.0061612, 0.37869, -0.10362, -0.36118, 0.66297, -0.095573, 0.080572, 0.12229,
        0.085611, 0.083678, -0.58015, 0.2839, -0.10412, 0.091117, -0.93052, 0.1768,
        -0.58009, 0.17524, -0.46703, 0.20447, -0.012572, -0.035774, 0.10632, 0.025792,
        0.023999, -0.46932, -0.049918, 0.041829, -0.35669, 0.16546, 0.30954, -0.44696,
        -1.9488, -0.28192, 0.073558, 0, 0.12653, 0.18614, -0.074383, -0.25108,
        0.82205, -0.072991, -0.25224, -0.088227, -0.17915, 0.012912, -0.5147, 0.44839,
        0.097238, 0.64617, -0.074066, 0.62653, 0.19046, -0.043206, 0.19462, -0.13075,
        0.2657, 0.44344, -0.049871, 0.10457, -0.047063, -0.068812, -0.41369, 0.66518,
        0.24902, -0.098473, 0.14504, 0.22543, 0.63302, 0.086338, -0.23642, -0.50531,
        -0.30209, -0.018721, 0.18733, 0.81119, 1.4426, 0.38552, 0.41421, -0.2627,
        0.48784, 0.37053, -0.12232, -1.6024, 0.91791, -3.5151, -1.4507, 0.042212,
        0, 0.48786, 0.070156, 0.45075, -0.27128, 0.17319, -0.69057, -0.20655,
        -0.43815, -0.047553, -0.047333, 0.19932, 0.040275, -0.066199, 0.39292, 0.55049,
        0.92884, 0.060821, 0.48342, 0.23886, 0.21189, -0.70345, 0.25725, 0.16523,
        -0.03248, -0.15802, -0.071278, -0.22517, 0.32697, 0.27728, 0.52711, 0.27827,
        0.038118, 0.18892, 0.62449, 0.083571, 0.42737, -0.1288, 0.41886, -0.065209,
        0.34549, -0.043892, -0.044662, -0.8903, 0.28598, 0.4229, -0.75248, -0.18776,
        -1.0332, 0.62335, 1.1186, 0.32539, -0.011294, 0, -0.23535, -0.085681,
        0.62079, -0.37729, -0.040777, -0.17293, -0.26825, 0.11049, -0.05459, 0.056749,
        0.044015, -0.14913, 0.065964, -0.13602, 0.036865, -0.16727, -0.031878, -0.39479,
        -0.25476, -0.239, 0.41421, 0.26846, 0.074651, -0.13417, -0.17259, -0.023473,
        -0.14768, 1.1007, -0.22002, -0.32143, -0.60485, -0.24007, 0.028903, 0.66381,
        -0.4074, 0.20896, 0.078454, 0.0008502, 0.10954, 0.043606, -0.15211, -0.073026,
        0.50369, 0.48071, 0.38801, -0.27288, 0.75461, 0.16173, -0.96267, 0.80521,
        0.3597, 0.68956, 0, 0.14292, -0.67347, 0.075497, -0.20467, 0.068355,
        0.35843, -0.17362, 0.22677, 0.037131, -0.045191, -0.79842, 0.42574, 0.88977,
        -0.41287, 0.50715, -0.14185, -0.035944, -0.035413, -0.22293, -0.23429, -0.046774,
        0.33712, -0.047133, -0.20269, 0.35855, -0.1076, -0.10999, -0.96281, -0.17345,
        0.19567, -1.2196, 1.8547, -0.28862, 0.053372, 0.03417, 0.15161, -0.04427,
        0.3741, 0.44194, 0.10784, -0.26293, 0.056708, -0.45782, -0.098224, -0.039505,
        0.020805, -0.0041261, 0.063392, -0.60392, -2.629, 0.027205, 0.025743, 0,
        -0.0052285, -0.026118, 0.43883, -0.55134, -0.14342, -0.028357, 0.10793, -0.2966,
        -0.1305, -0.050803, 0.15355, 0.34746, 0.167, 0.049243, 0.25841, -0.46985,
        0.074735, -0.22417, -0.38337, 0.24478, 0.22817, 0.513, 0.037972, 0.15917,
        0.56208, 0.078857, -0.10178, -0.95942, -0.056165, -0.042338, -0.1631, -0.23075,
        -0.61368, 0.21127, 0.29561, -0.25038, -0.2204, 0.28258, -0.013622, -0.13262,
        -0.15647, 0.053654, -0.59307, -0.058378, -0.16705, 0.51134, 0.51042, 0.11031,
        -0.63235, -2.217, 0.13339, -0.25728, 0, -0.46756, -1.0001, -0.061077,
        -0.32218, -0.19985, -0.18103, 0.29148, 0.32261, 0.086075, -0.088427, 0.2173,
        0.51059, -0.084405, -0.54798, -0.20892, 0.2158, -0.10533, 0.31905, 0.50127,
        -0.37048, -0.18424, 0.50523, -0.10175, 0.038101, 0.35233, -0.017454, 0.41801,
        -0.9142, 0.068307, -0.0059396, -0.90054, 0.67786, -0.063923, 0.11176, -0.042483,
        -0.57274, -0.014352, -0.73402, -0.0059296, -0.60755, 1.6555, 0.16933, -0.69373,
        -0.14046, 0.32308, 0.54248, -0.23861, 0.3513, -0.042762, 0.93939, -0.16956,
        0.91333, 0, 0.36475, 0.39164, 0.52237, -0.20411, -0.050411, -0.094232,
        -0.26682, -0.7608, 0.14771, -0.0071581, 0.030298, -0.43891, 0.39437, 0.43842,
        -0.46979, -0.087082, -0.07326, 0.26642, 0.18128, -0.12801, -0.23736, 0.25268,
        -0.01722, 0.086542, 0.52312, -0.02476, 0.10116, -1.1831, 0.028143, 0.45385,
        0.55928, -0.86229, -0.30488, 0.70169, 0.11731, 0.18578, 0.44218, 0.24584,
        -0.072745, -0.14553, -0.75659, 0.23086, 0.036223, -0.2398, -0.1081, 0.95727,
        -1.5042, 0.86281, 1.9384, -1.2597, -0.26408, 0.075932, 0, -0.53404,
        0.15847, 0.098125, 0.12721, 0.019046, -0.14224, 0.41277, -0.35042, -0.10863,
        -0.32896, -0.63689, -0.022295, -0.041643, 0.18049, -0.31921, -0.48946, -0.53239,
        0.18865, -0.0068684, 0.19664, 0.19696, 0.027461, 0.050618, 0.075785, 0.45499,
        0.10732, -0.1046, 0.20547, -0.28349, 0.053251, -0.96118, 0.41289, -0.2242,
        0.090078, 0.021052, -0.47236, 0.25431, -0.039671, -1.1867, 2.5495, 0.29514,
        0.063707, -0.11675, -0.096979, -0.075586, -0.38608, -0.20135, 0.66224, 0.16828,
        0.22943, -0.027191, 0.057091, 0, -0.38217, -0.29151, -0.10679, -0.015334,
        0.39172, -1.6905, 0.38025, -0.14388, 0.1679, 0.050049, -0.019204, -0.22396,
        -0.087151, -0.76832, 0.51585, 0.1008, 0.19875, 0.42639, 0.57371, 0.77568,
        0.59716, -0.16348, 0.21119, 0.09584, -0.29466, -0.049231, -0.29303, 0.82489,
        0.33069, 0.49149, -0.99611, 0.1713, 0.19179, -0.76447, -0.14588, 0.41137,
        0.43137, 0.27676, 0.6608, -1.4242, -0.87512, 0.22053, -0.0035469, -0.16712,
        -0.1333, -0.32091, 0.02163, 0.24916, 0.55107, 1.3859, -0.10393, -0.6187,
    ]).reshape(16, 53),
    np.array([
        1.0292, 4.8783, 5.1781, 2.3934, -0.20048, -0.050333, 2.0528, 4.105,
        -4.6411, -0.34305, 2.1433, 2.9525, -0.4047, -2.3624, -0.015599, -1.112,
    ]),
    np.array([
        1.0603, 0.79333, 0.49662, 0.84335, -1.3236, 0.82165, -1.905, -0.72487,
        -1.2731, -1.3999, 1.1271, -1.7017, -1.2867, -0.86964, 0.81445, 0.5679,
    ]),
    -0.15012,
)  # fmt: skip
# end of fitted block
#: Greedy line: cost per semitone of leap from the last chosen note, and how far back
#: (steps) that note still counts.
_LEAP_COST = 0.0
_WINDOW_STEP = 16
#: Track choice: penalty per unit of chordal fraction, the largest chordal fraction of a
#: melody track, and the segment length (steps, 8 bars of 4/4) of the stand-in rule.
_MONO_PENALTY = 16.0
_MONO_LIMIT = 0.05
_SEGMENT_STEP = 128
#: Mean skyline leap (semitones) up to which a merged input with flat velocities
#: (standard deviation at most ``_FLAT_VELOCITY``) counts as a clean top line. Where the
#: velocities vary the networks always decide: they read velocity, and on POP909 001-300
#: (validation) any leap gate there loses F1 (0.916 without, 0.904 at 3 semitones).
_CLEAN_LEAP = 4.0
_FLAT_VELOCITY = 2.0
#: First-pass melody probability under which a note is not scored by the second network.
_SECOND_MIN_Q = 0.05
#: A choice keeping under this share of the pitched notes, where the skyline keeps three
#: times as many, is replaced by the skyline (pop songs keep 14-30%).
_FALLBACK_SHARE = 0.08
#: Silence (steps) after which ``to_buttons`` puts the next note back on the middle lane.
_RECENTER_BEATS = 2


def melody_notes(score: Score) -> Notes:
    """Pick the melody line of a song: a monophonic subset of its notes.

    See the module docstring for the method. Works on files with the melody on its own
    track (names not needed) and on files with every part merged into one track and channel.

    Parameters
    ----------
    score : Score

    Returns
    -------
    notes : Notes
        New arrays, sorted by ``start_tick``, at most one note per 16th step, none
        overlapping the next (a note is cut at the next chosen onset). Never a drum note.
        Where the choice keeps under 8% of the pitched notes and ``skyline_notes`` keeps
        three times as many, the skyline is returned instead.
    """
    notes = score.notes
    n = len(notes)
    group = np.empty(n, dtype=np.int32)
    n_groups = _k.group_ids(notes.track, notes.channel, group)
    index = np.empty(n, dtype=np.int64)
    end_tick = np.empty(n, dtype=np.int64)
    k = _k.pick_melody(
        notes.start_tick, notes.end_tick, notes.pitch, notes.velocity, notes.is_drum, group, n_groups,
        score.ticks_per_beat, *_NET1, *_NET2, _LEAP_COST, _WINDOW_STEP, _MONO_PENALTY, _MONO_LIMIT,
        _SEGMENT_STEP, _CLEAN_LEAP, _FLAT_VELOCITY, _SECOND_MIN_Q,
        index, end_tick,
    )  # fmt: skip
    if k < _FALLBACK_SHARE * n:
        # Track choice and note scorer were fitted on pop songs; where they keep almost
        # nothing (3% of the NES corpus), the plain skyline is the better melody.
        n_pitched = int(n - np.count_nonzero(notes.is_drum))
        if k < _FALLBACK_SHARE * n_pitched:
            skyline = skyline_notes(score)
            if len(skyline) > 3 * k:
                return skyline
    index = index[:k]
    return Notes._adopt(  # fresh gathers (fancy indexing copies): no checks needed
        notes.start_tick[index],
        end_tick[:k],
        notes.pitch[index],
        notes.velocity[index],
        notes.channel[index],
        notes.program[index],
        notes.track[index],
        notes.is_drum[index],
    )


def skyline_notes(score: Score) -> Notes:
    """Pick the skyline baseline: per 16th step the highest starting note.

    A note is skipped while a higher chosen note still sounds. Drums are ignored;
    overlaps are cut as in ``melody_notes``.

    Returns
    -------
    notes : Notes
    """
    notes = score.notes
    start_step, end_step = quantize_notes(notes, score.ticks_per_beat, steps_per_beat=STEPS_PER_BEAT)
    order = np.lexsort((-notes.pitch.astype(np.int64), notes.start_tick, start_step))
    order = order[~notes.is_drum[order]]
    keep = np.zeros(len(order), dtype=np.bool_)
    _k.skyline(start_step[order], end_step[order], notes.pitch[order], keep)
    chosen = notes.take(order[keep])
    end_tick = chosen.end_tick.copy()
    if len(end_tick) > 1:
        end_tick[:-1] = np.minimum(end_tick[:-1], chosen.start_tick[1:])
    return Notes(
        chosen.start_tick, end_tick, chosen.pitch, chosen.velocity, chosen.channel, chosen.program,
        chosen.track, chosen.is_drum,
    )  # fmt: skip


def _check_steps_per_beat(steps_per_beat: int) -> None:
    if not isinstance(steps_per_beat, (int, np.integer)) or steps_per_beat <= 0:
        raise ParameterError(f"steps_per_beat is {steps_per_beat!r}; it must be a positive integer such as 4")


def melody_from_notes(
    notes: Notes, ticks_per_beat: int, n_steps: int | None = None, *, steps_per_beat: int = STEPS_PER_BEAT
) -> Melody:
    """Put monophonic melody notes (as from ``melody_notes``) onto the step grid.

    Parameters
    ----------
    notes : Notes
        Sorted by ``start_tick``; a later note overwrites an earlier one where they overlap.
    ticks_per_beat : int
    n_steps : int or None
        Length T of the result; None: the last release step of the notes.
    steps_per_beat : int
        Grid resolution (4 = 16th notes).

    Returns
    -------
    Melody
        ``pitch`` int16 (T,) with -1 for rests and ``onset`` bool (T,).
    """
    _check_steps_per_beat(steps_per_beat)
    if not isinstance(ticks_per_beat, (int, np.integer)) or ticks_per_beat <= 0:
        raise ParameterError(f"ticks_per_beat is {ticks_per_beat!r}; it must be a positive integer such as 480")
    if n_steps is None:
        n_steps = _k.line_steps(notes.start_tick, notes.end_tick, ticks_per_beat, steps_per_beat)
    elif n_steps < 0:
        raise ParameterError(f"n_steps is {n_steps!r}; it must be None or a length >= 0")
    pitch = np.empty(n_steps, dtype=np.int16)
    onset = np.empty(n_steps, dtype=np.bool_)
    _k.render_ticks(notes.start_tick, notes.end_tick, notes.pitch, ticks_per_beat, steps_per_beat, pitch, onset)
    return Melody._adopt(pitch, onset, steps_per_beat=int(steps_per_beat))


def extract_melody(score: Score, *, steps_per_beat: int = STEPS_PER_BEAT) -> Melody:
    """Extract the melody of a song onto the step grid: ``melody_from_notes(melody_notes(score))``.

    Parameters
    ----------
    score : Score
    steps_per_beat : int
        Grid resolution (4 = 16th notes).

    Returns
    -------
    Melody
        ``pitch`` int16 (T,) with -1 for rests and ``onset`` bool (T,); T is the last
        release step of the melody notes (0 for a song without pitched notes).
    """
    _check_steps_per_beat(steps_per_beat)
    return melody_from_notes(melody_notes(score), score.ticks_per_beat, steps_per_beat=steps_per_beat)


def _window_step(melody: Melody, max_onsets: str) -> int:
    if max_onsets not in get_args(MaxOnsets):
        raise ParameterError(f"max_onsets is {max_onsets!r}; use one of {get_args(MaxOnsets)}")
    spb = melody.steps_per_beat
    if max_onsets == "beat":
        return spb
    if spb % 2:
        raise ParameterError(f"max_onsets={max_onsets!r} needs an even steps_per_beat; this melody has {spb}")
    return spb // 2


def simplify(melody: Melody, *, max_onsets: MaxOnsets = "beat") -> Melody:
    """Thin a melody to what a person would play: at most one onset per beat (or half beat).

    The input is already monophonic (one pitch per step). The grid is cut into aligned
    windows of one beat (``"beat"``) or half a beat (``"half_beat"``). In each window the
    first note start is kept, so a note on the beat always wins; later starts in the
    window are dropped and the kept pitch is held through them until the next kept onset,
    or until the input rests. A note that starts after a rest in an already used window
    is picked up at the next window (with an onset there).

    Causal: the output at step t depends on input steps <= t only (the rule never waits
    for a longer or higher note later in the window), so the same rule runs live.

    Parameters
    ----------
    melody : Melody
    max_onsets : {"beat", "half_beat"}

    Returns
    -------
    Melody
        Same length and ``steps_per_beat``; every pitch comes from the input, rests stay
        rests, at most one onset per window.
    """
    window = _window_step(melody, max_onsets)
    pitch = np.empty(len(melody), dtype=np.int16)
    onset = np.empty(len(melody), dtype=np.bool_)
    _k.thin_onsets(melody.pitch, melody.onset, window, pitch, onset)
    return Melody._adopt(pitch, onset, steps_per_beat=melody.steps_per_beat)


def to_buttons(melody: Melody) -> tuple[np.ndarray, np.ndarray]:
    """Map a melody's contour to five button lanes, causally.

    Rule: the first note, and the first note after a rest of at least two beats, takes the
    middle lane 2. Every other note moves from the previous note's lane by its interval to
    the previous note: a repeated pitch keeps the lane, 1-4 semitones move one lane, 5 or
    more move two, up for up and down for down, clamped to 0..4 (at the edge a further
    step the same way stays on the edge lane). Held steps keep their lane; rests are -1.
    The lane at step t depends on steps <= t only.

    Worked example (one step per note): C4 D4 E4 E4 G4 C4 = pitches 60 62 64 64 67 60 ->
    lanes 2 3 4 4 4 2 (up 2: +1; up 2: +1; repeat: same; up 3 at the top edge: stays 4;
    down 7: -2).

    Parameters
    ----------
    melody : Melody

    Returns
    -------
    lane : np.ndarray [shape=(T,), dtype=int8]
        0..4, -1 at rests.
    onset : np.ndarray [shape=(T,), dtype=bool]
        True where a note starts (never at a rest).
    """
    lane = np.empty(len(melody), dtype=np.int8)
    onset = np.empty(len(melody), dtype=np.bool_)
    _k.button_lanes(melody.pitch, melody.onset, _RECENTER_BEATS * melody.steps_per_beat, lane, onset)
    return lane, onset
