"""Drug-safety checks on orders and active therapy (brief section 4).

Rules to write here: SAFE-1..16 (C-SAFE-RENAL, C-SAFE-HYPOCA, C-VITD-LOW on
order hooks, C-SAFE-ESOPH, C-SAFE-ROMO-CV, C-SAFE-ROMO-LIMIT, C-SAFE-PTH-LIMIT,
C-SAFE-ANABOLIC-CONTRA, C-ANABOLIC-FOLLOW-ON, C-DMAB-DUE, C-DMAB-OVERDUE,
C-DMAB-STOP, C-SAFE-DMAB-CKD, C-DUP-ANTIRES).
Order hooks judge record.judged_drafts (kind == "medication", agents,
drug_classes, oncology); a safe alternative can delete the draft via
Finding.delete_draft = draft.reference. Safety cards need an actual value:
record.lab("egfr", settings.lab_max_age_months) None means unknown, stay quiet.
"""
