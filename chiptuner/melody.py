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
   the note on all 53. The same context again, now from the second pass's sharper line,
   and 7 segment features (``SEGMENT_NAMES``: bars from the song's start and to its end,
   how dense the likely line is around the note against the whole song, how often two
   likely notes start together) make 67 inputs per note. Both networks were fitted on
   POP909 001-300 with bench/fit_melody.py, on each song as it is and with its track
   velocities pulled together (later POP909 songs play every track at one level).
   A bidirectional GRU over all the notes in onset order (``_LINE``, 32 units each way,
   ``_kernels.melody.line_logits``, weights in ``models/melody_line.npz``) turns those
   inputs into the final score. It sees the whole song, so it can tell the sung parts
   from intros, interludes and a counter-melody playing above the voice, which a
   note-by-note network cannot: on held-out POP909 songs with all three tracks merged it
   lifts F1 from 0.74 to 0.87 (MELODY+PIANO merged: 0.91 to 0.97; README). It was
   fitted with torch on POP909 songs not divisible by 3 (bench/fit_melody_line.py);
   songs 301-909 divisible by 3 are the held-out set. A causal greedy line takes per
   onset step the best-scored note if its score is positive.
5. Chosen notes that overlap the next chosen note are cut at its onset.
"""

from __future__ import annotations

import logging
from pathlib import Path
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
        0, 0.46705, 0.015604, -0.023501, -0.27706, 0.1864, -0.29756, -0.034855,
        0.30385, -0.17428, 0.079669, 0.19406, -0.52361, -0.0078789, 0.12348, 4.5285,
        -0.15254, -0.11119, 0.2204, -0.045277, 0.071272, -0.3448, -0.039903, -0.078753,
        -0.078035, -0.18284, -0.11199, -0.097901, 0.080191, 0.023712, -0.059, 0,
        -1.2327, 0.38627, -0.47304, 0.054352, 0.82325, 0.80638, 0.11607, 0.19148,
        -0.27114, 0.054197, 0.62495, 0.68968, 0.18728, 2.6422, -0.28615, 0.41657,
        0.25371, 0.37718, -0.33007, -0.64177, -0.48466, -0.48944, -0.053247, 0.19471,
        0.1968, -0.20667, 0.41007, 0.91712, 0.10348, -0.14866, 0, -0.21871,
        -1.1591, -1.318, 0.22538, -0.43383, -2.0897, -0.98628, -1.1786, 0.38478,
        -0.058131, 0.4417, -0.3864, -0.48309, 0.64541, -0.22128, -0.20475, -0.13624,
        0.14684, -0.20517, -0.29358, -0.2362, -0.41934, -0.13884, -0.11578, -1.4351,
        0.041009, 0.11333, -0.84588, 0.075663, -0.65701, 0, 0.65482, 0.94736,
        -0.45733, -0.69102, 0.11405, -3.0845, 0.27595, -0.5506, 0.37309, -0.010499,
        0.047259, -0.64665, -0.59602, -0.36188, -1.0339, 0.071283, 0.13142, 0.21987,
        0.39472, 0.60817, -0.29683, -0.30099, 0.25032, -0.24363, -0.20771, 0.13371,
        -0.034666, -0.57804, -0.10527, 0.10541, 0, 0.81516, 0.99393, 0.57094,
        -0.083013, 0.33611, 0.0052486, -0.55366, -0.60211, -0.2867, 0.10077, 0.074714,
        -1.1946, 0.65981, 0.33561, 1.0873, -0.39927, 0.11458, -0.27741, -0.46735,
        0.21784, 0.52723, -0.38961, 0.1608, 0.085576, 0.83929, -0.27404, -0.17127,
        -0.70404, 0.042561, 0.62096, 0, 0.60632, -0.041399, -0.27626, -0.23026,
        -0.20548, 0.36606, 0.26683, -0.24276, -0.10047, -0.23432, 0.43275, 0.21996,
        -0.49283, 1.2954, 1.1161, -0.58987, 0.16815, -0.035152, 1.0523, 1.2611,
        -1.4846, 0.22931, 0.14365, -0.078299, -0.44402, -0.26247, -0.26461, -1.8899,
        -1.127, 0.12071, 0, -2.0304, -0.50436, -0.51144, 0.44189, -1.7395,
        0.28943, 0.1906, -0.22208, -0.3033, -0.10803, 0.26175, -0.20366, -0.2238,
        -0.42383, -0.47746, -0.179, -0.17817, -0.29232, 0.10271, -0.40172, 0.50648,
        -0.19904, -0.4273, -0.14498, -0.11281, 0.18583, 0.051403, -0.48309, -0.27227,
        -1.252, 0, 0.17242, -0.66282, -0.19078, 0.055275, 0.10473, -0.4698,
        -0.047777, 0.40663, 0.59132, 0.044527, -0.253, -0.55924, 0.12153, -2.3374,
        -0.74891, 0.3198, 0.037976, -0.22836, -0.51245, -0.82919, -0.28873, -0.10547,
        0.009523, 0.046113, -0.31141, 0.14082, -0.48434, -0.94342, 0.59947, -0.44981,
        0, -0.19733, 0.73447, 0.08047, -0.031567, 0.042786, 0.30907, -0.079123,
        0.01418, 0.032076, 0.018662, 0.2487, 1.1395, -2.3516, 0.46195, 0.62672,
        0.63964, 0.034384, -0.23747, -0.40019, 0.08959, 0.26919, -0.35341, -0.00038808,
        0.23101, -1.1513, 0.089503, 0.12328, 3.2364, 0.25289, 0.87823, 0,
        0.06723, -0.82421, 0.60254, -0.42264, -0.72854, -0.16063, -0.21116, -0.31775,
        0.10909, 0.08801, -0.13107, 0.54946, 0.04368, 0.080284, -0.41893, 1.3392,
        -0.075023, -0.12626, -0.64528, -0.41429, 0.024937, 0.90018, -0.11608, 0.30301,
        -0.22244, 0.33073, 0.072814, -0.79456, -0.18846, 0.15167, 0, -0.8693,
        -0.52737, 0.85393, -1.0637, -0.18612, 0.084853, 0.09896, 0.055015, 0.12714,
        -0.11304, 0.14316, 0.31422, 0.3362, 0.31157, 0.17166, -0.23176, 0.045114,
        -0.044151, -0.12803, -0.32085, -0.060663, 1.0409, -0.12107, -0.029508, -0.42613,
        0.069586, 0.014386, 0.0253, 0.044554, 0.072391, 0, -0.21224, -0.083973,
        -0.29241, -0.59282, 0.036976, -1.7913, -0.02407, -0.073233, -0.29813, 0.13745,
        -0.11306, 0.096825, 0.25595, -0.39887, -0.58043, -0.52307, -0.58339, 0.76493,
        0.51491, 0.14342, -0.93727, 0.76371, 0.032642, 0.043389, -0.06627, -0.28206,
        -0.15663, 0.93913, 0.26, -0.29089, 0, -0.44764, -0.2158, 0.37482,
        -0.83815, -0.41099, -3.7808, 0.078011, -0.43801, 0.15694, -0.0042946, 0.20146,
        0.4261, -0.28759, -0.071713, -0.015562, 0.027188, -0.083415, 0.26669, 0.022651,
        -0.28761, -0.44996, 0.82999, 0.010217, -0.020964, -0.70081, 0.023092, 0.075387,
        0.71827, 0.028183, -0.077805, 0, -0.26139, 0.19088, 0.39099, -0.34602,
        -0.11796, 0.75873, -0.034649, -0.45681, -0.039372, -0.11839, 0.40601, 0.021216,
        -0.19912, 0.26253, 0.60108, 0.33466, 0.044043, 1.1028, 1.1314, 0.16806,
        -1.7011, 0.392, 0.053749, -0.27176, -0.63386, -0.15544, -0.010864, 1.6307,
        0.73376, 0.66187, 0, -0.85948, -0.70842, 0.4417, -0.26485, -0.65282,
        -0.19891, 0.36153, -0.10994, -0.18775, 0.17528, 0.070585, 0.51117, 0.34226,
        0.73501, 0.73507, 0.45465, -0.12605, 0.11995, 1.3137, 0.87445, 1.2975,
        0.60552, 0.1176, 0.27266, 0.31875, -0.51726, -0.28788, -0.50406, 0.153,
        0.057994, 0, -0.11991, -0.3851, -0.35312, 0.07349, -3.7942, -1.6204,
        -0.12525, 0.22165, 0.18851, -0.086404, -0.64466, 0.28553, 0.73922, 0.27378,
        0.15586, 0.61875, -0.0088594, -0.24736, 0.16924, -0.41948, -0.60928, -0.25171,
        -0.083749, 0.076676, 0.37495, 0.11628, 0.22369, 1.8099, 0.16326, -0.0066598,
    ]).reshape(16, 31),
    np.array([
        -2.1562, -1.5025, 2.9979, 1.2144, -0.34583, 1.4465, 3.4003, 2.8647,
        -5.9808, -0.47672, 1.576, 3.0274, 1.6896, -1.7205, 0.31266, -1.0337,
    ]),
    np.array([
        1.0252, 0.71459, 1.1506, 0.70351, -1.2662, -0.70547, 0.86411, 0.62136,
        -0.82404, -0.86819, -2.9638, 0.65685, -2.1047, -1.1404, 0.64312, 0.73332,
    ]),
    -0.80055,
)  # fmt: skip
_NET2 = (
    np.array([
        0, 0.437, 0.27514, -0.22699, 0.14018, -0.20503, -1.2042, 0.047284,
        -0.095798, 0.29863, -0.070709, 0.21811, -0.12573, 0.57379, 0.32042, -0.10385,
        0.3823, 0.077328, 0.37931, 0.074772, 0.18309, -0.69162, -0.32491, -0.079808,
        0.15031, 0.62536, 0.19625, 0.040311, -0.38227, 0.36089, -0.14316, 1.5839,
        -0.77617, -0.29678, -0.17234, -0.27712, -0.088406, -0.090737, -0.47962, -0.24832,
        0.26715, -0.29813, -0.084349, -0.59556, -0.054984, 0.10179, -0.081874, 0.56549,
        -0.051712, -0.3176, 0.31031, -0.29118, 0.25264, 0, 0.62287, 0.071645,
        -0.29382, -0.061173, 0.020324, -0.29735, -0.14062, 0.46331, -0.016621, 0.077315,
        -0.39303, 0.46143, 0.81483, -0.10073, 0.57356, -0.089611, -0.13544, -0.26047,
        -0.2332, -0.34017, 0.053947, 0.054987, -0.049264, -0.0057817, 0.71905, -0.11711,
        -0.053574, -0.91381, -0.54029, -0.026258, -1.1482, 0.41523, -0.4929, 0.081734,
        0.18536, 0.11273, -0.025861, 0.39178, 0.10317, 0.11537, -0.24848, 0.2608,
        -0.79809, 0.063118, 0.031497, 0.21621, 0.12416, -0.20606, 0.40689, -1.8259,
        0.038532, 0.28895, 0, 0.10004, 0.055384, -0.62443, 0.056412, -0.55047,
        0.315, -0.32231, -0.3098, -0.10602, -0.087809, -0.63417, 0.45243, 0.26514,
        0.14423, 0.19682, -0.63758, -0.055694, -0.46204, -0.29412, -0.4689, 0.25182,
        -0.12623, -0.23198, -0.55176, -0.11089, -0.15412, -0.04217, -2.1401, -0.17378,
        -0.45759, -0.63421, 0.70819, 0.34378, -0.2437, 0.28494, -0.90895, -0.37543,
        -0.58316, -0.41555, -0.9201, -0.39724, -0.026022, -0.51783, 0.30545, -0.38742,
        -0.20317, 0.74879, 0.16173, -0.66587, -4.2825, 0.49393, -0.029824, 0,
        -0.45357, -0.060443, -0.46602, 0.15786, 0.28295, 0.32036, 0.07311, 0.14323,
        0.21034, 0.044183, 0.32536, 0.38436, 0.36036, 0.16398, -1.8772, -0.176,
        -0.16202, 0.12911, -0.25617, -0.23747, 0.19878, -0.4049, -0.059686, 0.13666,
        0.16091, -0.044869, -0.072929, -0.13569, -0.38157, 0.029555, -0.44867, -0.45892,
        -0.42956, 0.23594, 0.13901, -0.22423, -1.3956, 1.6095, 0.088705, 0.021437,
        0.62995, -0.070937, -0.1896, -0.16625, 0.03317, -0.13932, 0.26133, 0.43675,
        -0.2904, -1.4324, 0.051916, 0.28417, 0, 0.35059, 0.27235, 0.36481,
        -0.17505, -0.30844, -0.11663, 0.5749, 0.53281, 0.25089, -0.14548, 0.046947,
        -0.82843, 0.13452, 0.69542, 0.017122, -0.026251, 1.821e-05, 0.1049, 0.28337,
        -0.2695, 0.16365, 0.25932, 0.072726, -0.1063, 0.14542, -0.080786, -0.07299,
        -1.8271, -0.12896, -0.81857, -1.6708, 0.58429, -0.31982, 0.43311, -0.48389,
        0.42622, -0.042465, -0.4826, -0.014752, -0.10263, 1.5893, 0.14258, -0.26086,
        -0.29903, -0.1697, -0.023221, 0.29378, 0.99422, -0.45314, 0.473, 0.75083,
        -0.64871, 0, 0.82315, -0.24198, 0.1902, -0.16934, -0.06069, -0.37674,
        0.27205, 0.11553, -0.090227, 0.084475, 0.14536, 0.033195, -0.60109, -0.44947,
        -0.50947, -0.086537, -0.13995, 0.73417, 0.54352, 0.57814, 0.50301, 0.31715,
        0.069789, 0.37542, -0.022807, 0.11159, 0.10121, 1.0448, 0.43946, -0.21123,
        -2.1757, 0.64926, 0.32305, -0.47028, -0.52563, 0.24281, 0.010177, 0.2089,
        -0.11212, -0.042559, 0.28632, 0.21736, -0.19445, -0.051021, -0.25721, 0.1007,
        0.048422, 0.17217, 0.37295, 2.8011, -0.52915, -0.35961, 0, -0.67324,
        -0.57335, 0.70692, -0.68225, 0.10321, -0.63342, 0.10587, 0.53456, 0.28768,
        -0.14287, -0.11455, 0.3862, 0.4018, 0.33876, -0.33023, 0.014149, -0.049486,
        -0.20175, 0.32692, -0.20097, -0.10607, 0.6764, 9.5248e-05, -0.083053, 0.29496,
        0.17819, 0.087087, -0.83532, 0.26168, 0.063588, -1.0947, -0.93192, 0.43272,
        -0.39688, 0.16403, -0.46343, 0.058789, -0.11191, 0.037535, 0.24924, 0.36426,
        0.039211, -0.51241, -0.024581, 0.029083, -0.012498, -0.082227, 0.35903, -0.77923,
        -0.4693, -0.1129, 0.50897, 0, 0.10095, 0.015797, 0.22746, -0.2819,
        0.59264, -0.0082103, -0.30202, 0.083815, -0.22882, 0.051124, -0.63044, 0.37366,
        0.12438, 0.39152, 0.12666, 0.16435, 0.17214, 0.24296, 0.75799, 0.11846,
        0.54317, 0.44341, -0.35443, -0.019869, 0.036797, -0.043952, -0.18792, 1.3648,
        0.28791, 0.026674, -0.69242, 0.16786, 0.80176, -0.12374, -0.49025, -0.15102,
        -0.25375, -0.063196, 0.44542, 0.11635, 1.4044, 0.70759, 0.50314, -0.4524,
        0.40834, -0.40395, -0.10805, -1.8091, 1.1361, 2.0635, -0.97069, 0.11632,
        0, 0.86207, 0.16063, 0.27903, -0.18115, 0.042792, -0.557, -0.23769,
        -0.55742, -0.048271, -0.014012, 0.23992, 0.0019346, 0.060121, 0.2243, 0.44986,
        0.71044, 0.03816, 0.52129, 0.21397, 0.10181, -0.9164, 0.20543, -0.032219,
        0.12211, -0.062218, -0.0023207, -0.060913, 0.24651, 0.26167, 0.47836, 0.53663,
        -0.16579, 0.21853, 0.32075, -0.12226, 0.31257, -0.052161, 0.40626, -0.12888,
        0.0097783, -0.15371, -0.032242, -1.2554, 0.40201, 0.46335, -0.19235, -0.42546,
        -0.83946, -0.060098, 1.9231, 0.31993, 0.045568, 0, -0.22523, 0.43618,
        0.7664, -0.59154, 0.11249, -0.12747, -0.16238, -0.090397, -0.16153, 0.04059,
        0.21595, -0.052431, 0.093597, -0.019206, 0.1154, -0.595, 0.010597, -0.64984,
        -0.49593, -0.055712, 0.8007, 0.48131, 0.039332, -0.10156, -0.16192, -0.073655,
        -0.19738, 0.84948, -0.30243, -0.23718, 0.15985, -0.53902, -0.32323, 0.86767,
        -0.32213, 0.10058, -0.011672, 0.18134, 0.081177, -0.10547, -0.26172, -0.085146,
        0.43017, 0.33804, 0.22715, -0.10697, 0.80879, 0.14396, -0.61377, 0.56531,
        -0.040399, 0.57986, 0, 0.067996, -0.48048, 0.1739, -0.30775, 0.15196,
        0.29551, -0.075769, 0.1888, -0.036193, -0.0122, -0.10786, 0.40656, 0.82977,
        0.15159, 0.37445, -0.22814, 0.043596, 0.30587, -0.1252, 0.11751, 0.028194,
        0.4093, 0.068753, -0.015086, 0.2181, -0.043762, -0.066278, -2.0251, 0.17723,
        0.33838, -0.43844, 1.7303, -0.013448, 0.309, -0.10287, 0.30548, -0.10391,
        0.11394, 0.097409, 0.09932, -0.41364, -0.074711, -0.4177, -0.091261, -0.16575,
        0.20843, -0.12279, 0.41323, -0.73409, -6.4767, -0.13874, -0.0057507, 0,
        0.057477, -0.27582, 0.18803, -0.54892, -0.21138, 0.3443, 0.47881, 0.12952,
        -0.26605, -0.10106, 0.15501, 0.52781, 0.1159, 0.0060479, 0.36616, -0.074461,
        0.13383, 0.07986, 0.08578, 0.14283, 0.089655, 0.64519, 0.02664, 0.043966,
        0.44569, -0.097541, -0.07196, -1.8024, -0.085562, 0.14991, 0.35873, -0.17538,
        -0.5631, 0.17768, 0.26232, -0.98265, -0.16057, 0.026567, 0.037525, -0.63749,
        0.14736, 0.045772, -0.67926, -0.16166, 0.055879, 0.43575, 0.075147, -0.0044192,
        0.42684, -2.8933, -0.72341, 0.38715, 0, 0.13724, -0.70598, 0.17243,
        -0.5742, -0.32039, 0.054174, 0.085456, -0.036369, 0.14345, -0.0088428, 0.040096,
        0.37333, -0.080715, -0.5175, -0.031748, -0.067869, -0.03571, -0.059442, -0.17642,
        0.015885, -0.28207, 0.56406, -0.095931, 0.1331, 0.34926, 0.11574, 0.25929,
        -0.90645, 0.045449, -0.58871, -0.41294, -0.20697, -0.1102, -0.2345, 0.24266,
        -0.065849, -0.18656, 0.11479, -0.045919, 0.16611, 0.38977, -0.039201, -0.81624,
        0.20615, -0.14152, -0.23372, 0.85343, 0.32097, -1.2055, -2.3607, 0.43887,
        0.24075, 0, 0.15832, 0.76216, 0.54344, -0.39678, -0.42681, -0.096617,
        -0.0917, -0.49849, -0.051851, 0.0014045, -0.087216, -0.68214, 0.30363, 0.29285,
        -0.042621, -0.79978, 0.044128, 0.42091, 0.0082476, 0.094829, -0.215, 0.412,
        0.055582, 0.056638, 0.38349, 0.028841, 0.024074, -1.7214, 0.29929, -0.08896,
        -0.27269, -0.59026, -0.023591, 0.57292, 0.15753, 0.3832, 0.10243, 0.34409,
        0.014496, 0.26418, -0.4324, 0.11236, 0.032981, -0.51386, -0.54371, 0.50994,
        -0.8434, 1.4178, 1.13, -0.038405, -0.43098, -0.89911, 0, -0.93853,
        -0.40797, -0.011828, 0.086977, 0.38551, -0.39168, 0.69186, -0.20847, -0.18621,
        -0.28012, -0.14248, 0.038575, 0.07223, 0.18957, 0.066694, -0.78828, -0.63986,
        0.13517, -0.18716, 0.30071, 0.5533, 0.026272, -0.11233, 0.1203, 0.57878,
        0.19405, -0.14868, 0.25869, -0.36339, 0.12445, -0.43774, 0.15519, -0.042371,
        0.089236, -0.17358, -0.093766, 0.08018, 0.17322, -1.0331, 2.1694, -0.35238,
        0.08427, -0.052505, -0.16659, -0.057963, -0.3625, -0.25478, 0.89571, -0.4959,
        -0.06669, -0.29529, 0.58923, 0, -0.78505, -0.17339, -0.42628, -0.10656,
        0.68961, -1.1629, 0.30024, -0.36481, 0.081468, 0.036731, 0.051331, -0.17637,
        0.321, -0.52267, 0.40929, -0.087749, 0.40997, -0.098491, -0.21673, 0.66154,
        0.33904, -0.12214, -0.036218, 0.22549, 0.079653, -0.13938, -0.12648, 0.51946,
        0.10661, 0.45945, 1.1167, -0.49078, -0.069905, -0.79004, -0.035775, 0.4801,
        0.22102, 0.37702, 1.4185, -1.6113, -0.97008, 0.21715, -0.0031277, -0.010173,
        0.067668, -0.18831, 0.0283, 0.13336, -0.30194, 0.92871, -0.44137, 0.41301,
    ]).reshape(16, 53),
    np.array([
        -2.1039, 0.36666, 11.169, 1.6654, -1.1101, -2.0996, 1.323, 1.3875,
        -4.7515, 0.10144, 3.0212, 2.8022, 3.1114, 0.066346, 0.15592, -1.0935,
    ]),
    np.array([
        0.90903, 1.5553, 0.65611, 0.82741, -1.2149, 0.95205, -1.6315, -0.78787,
        -1.4812, -1.5709, 1.2866, -1.4528, -1.4359, -0.88568, 0.78564, 0.60287,
    ]),
    0.02306,
)  # fmt: skip
# end of fitted block


#: Where ``load_line_net`` reads the line network (bench/fit_melody_line.py writes it).
LINE_NET_PATH = Path(__file__).parent / "models" / "melody_line.npz"
#: The arrays of ``_kernels.melody.line_logits`` in its argument order.
LINE_NET_KEYS = ("w_in", "b_in", "w_ih", "w_hh", "b_ih", "b_hh", "w_out", "b_out")


def load_line_net(path: Path = LINE_NET_PATH) -> tuple:
    """The line network's arrays (float64, ``LINE_NET_KEYS`` order; ``b_out`` a float)."""
    with np.load(path) as f:
        arrays = [np.ascontiguousarray(f[key], dtype=np.float64) for key in LINE_NET_KEYS[:-1]]
        return (*arrays, float(f["b_out"]))


_LINE = load_line_net()

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
    start_step = np.empty(len(notes), dtype=np.int64)
    end_step = np.empty(len(notes), dtype=np.int64)
    _k.grid_steps(notes.start_tick, notes.end_tick, score.ticks_per_beat, STEPS_PER_BEAT, start_step, end_step)
    return _melody_notes(score, start_step, end_step)


def _melody_notes(score: Score, start_step: np.ndarray, end_step: np.ndarray) -> Notes:
    """``melody_notes`` given the notes' 16th-grid steps (``_kernels.melody.grid_steps``)."""
    notes = score.notes
    n = len(notes)
    out = (
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int16),
        np.empty(n, dtype=np.int16),
        np.empty(n, dtype=np.int8),
        np.empty(n, dtype=np.int16),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.bool_),
    )
    k = _k.pick_melody(
        notes.start_tick, notes.end_tick, start_step, end_step, notes.pitch, notes.velocity, notes.channel,
        notes.program, notes.track, notes.is_drum, _NET1, _NET2, _LINE, _LEAP_COST, _WINDOW_STEP,
        _MONO_PENALTY, _MONO_LIMIT, _SEGMENT_STEP, _CLEAN_LEAP, _FLAT_VELOCITY, _SECOND_MIN_Q, *out,
    )  # fmt: skip
    if k < _FALLBACK_SHARE * n:
        # Track choice and note scorer were fitted on pop songs; where they keep almost
        # nothing (3% of the NES corpus), the plain skyline is the better melody.
        n_pitched = int(n - np.count_nonzero(notes.is_drum))
        if k < _FALLBACK_SHARE * n_pitched:
            skyline = skyline_notes(score)
            if len(skyline) > 3 * k:
                return skyline
    # the kernel's fresh outputs, cut to the chosen notes: no checks needed
    return Notes._adopt(*[array[:k] for array in out])


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
