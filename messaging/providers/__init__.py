"""SMS/MMS providers, one module each behind ``base.Provider``, chosen by HUIFANG_SMS_PROVIDER."""
