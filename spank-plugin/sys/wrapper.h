/* The SPANK API and the Slurm version the plugin is built for. */
#include <slurm/slurm_version.h>
#include <slurm/spank.h>
