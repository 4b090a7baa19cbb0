"""Exercise, rehabilitation and fall prevention (brief section 6, card family d).

Rules to write here:
- EX-1 C-EXERCISE (info, patient-view): osteopenia, osteoporosis or fragility
  fracture; spinal precautions when osteoporosis or vertebral fracture (SEED; TFTF).
- EX-2 PT referral suggestion inside C-EXERCISE (SNOMED 444831000124102 /
  306170007) for vertebral or hip fracture, fall history, gait/balance
  abnormality or fresh fracture rehabilitation (SEED).
- FALL-1 C-FALLS (info, patient-view): age >= settings.fall_prevention_min_age
  with osteopenia/osteoporosis/fracture, or any fall history at >= 50 (SEED; BHOF22).
Record fields: fractures, has("falls"/"gait_balance"), fall_risk.
"""
