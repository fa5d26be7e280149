"""The station metadata processing unit (issue 6): not written yet."""
