/* Classifier files for other writers and readers of the io layer (the finetuner's checkpoints):
 * the classifier's tensors and metadata plus extra ones, and a classifier from a parsed file. */
#ifndef MAE_CLASSIFIER_IO_H
#define MAE_CLASSIFIER_IO_H

#include "../model/classifier.h"
#include "safetensors.h"

/* mae_classifier_save_as with extra tensors (their data set) and metadata pairs appended; every
 * tensor stored as dtype (MAE_DT_F32, F16 or BF16). */
mae_status mae_classifier_write(const mae_classifier *c, const char *path, int dtype, const mae_st_out *extra,
                                int n_extra, const mae_st_meta *extra_meta, int n_extra_meta);
/* A classifier from path (mae_classifier_load's work; num_classes 0 = the file's). The message of
 * a failure starts with 'path'. */
mae_status mae_classifier_load_file(const char *path, int num_classes, mae_classifier **out);
/* mae_classifier_load on a parsed file (want: the class count asked for, 0 = the file's). */
mae_status mae_classifier_from_st(const mae_st_file *f, int want, mae_classifier **out);

#endif
