/* Private: translation of system errors into s3dl_status. */
#ifndef S3DL_STATUS_H
#define S3DL_STATUS_H

#include "s3dlio.h"

/* Maps an errno value to the closest status (unknown values: S3DL_E_IO). */
s3dl_status status_from_errno(int err);

#endif
