"""Sequential recommenders: next item from the ordered history (SASRec, BERT4Rec, TAT-TV)."""
