/* The CLI's data sources live in the experiment floor (experiment/data.h); this header keeps
 * the name the commands include. */
#include "experiment/data.h"
