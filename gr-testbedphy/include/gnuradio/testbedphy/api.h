/* Export macro of the testbed's PHY module (gr_modtool layout). */
#ifndef INCLUDED_TESTBEDPHY_API_H
#define INCLUDED_TESTBEDPHY_API_H

#include <gnuradio/attributes.h>

#ifdef gnuradio_testbedphy_EXPORTS
#define TESTBEDPHY_API __GR_ATTR_EXPORT
#else
#define TESTBEDPHY_API __GR_ATTR_IMPORT
#endif

#endif
